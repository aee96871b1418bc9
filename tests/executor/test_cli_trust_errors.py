"""Issue 12 on the executor's command line: bad input to ``generate`` and ``bench`` (values,
devices, files, corrupt or unsupported models, a closed pipe) is one line and exit 2, never a
traceback, and checked before the models load; KV caches that do not fit are refused before
anything is allocated."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json
import os
import subprocess
import sys

import torch
from cli_checks import no_loading, one_line_error, pair_args, paths, write_prompts  # noqa: F401 (fixtures)
from saved_pair import make_tokenizer, save_model

from specgrove.cli import main


# ---- 1. one line, exit 2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_generate_refuses_a_non_finite_or_negative_temperature(value, capsys):
    assert main(["generate", "--prompt", "x", "--temperature", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("specgrove: error: --temperature must be >= 0 and finite, got ") and err.count("\n") == 1


def test_bench_refuses_a_prompt_file_that_is_not_utf8(paths, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(b'\xff\xfe{"text": "caf\xe9"}\n')
    one_line_error(capsys, ["bench", *pair_args(paths), "--prompts", str(prompts), "--out", str(tmp_path / "o")],
                   "prompt file is not UTF-8 text")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("role", ["target", "draft"])
def test_corrupt_safetensors_names_the_model(paths, tmp_path, capsys, role):
    import shutil

    broken = tmp_path / role
    shutil.copytree(paths[role], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download
    argv = ["generate", "--target", str(broken if role == "target" else paths["target"]),
            "--draft", str(broken if role == "draft" else paths["draft"]), "--prompt", "x"]
    line = one_line_error(capsys, argv, f"{role} model at {str(broken)!r} could not be loaded")
    assert "SafetensorError" in line


@pytest.fixture(scope="module")
def unsupported(tmp_path_factory):
    """A GPT-NeoX target (a model type the lean runtime does not run) whose vocabulary also
    differs from the draft's: the old check reported 'output sizes differ'."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    root = tmp_path_factory.mktemp("unsupported")
    tok = make_tokenizer(300)
    config = GPTNeoXConfig(vocab_size=len(tok) + 8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=128)
    GPTNeoXForCausalLM(config).save_pretrained(root / "neox", safe_serialization=True)
    tok.save_pretrained(root / "neox")
    gelu = save_model(root / "gelu", tok, 3, 1)
    cfg = json.loads((gelu / "config.json").read_text())
    cfg["hidden_act"] = "gelu"  # a Llama with an activation the lean runtime does not implement
    (gelu / "config.json").write_text(json.dumps(cfg))
    return {"neox": root / "neox", "gelu": gelu}


def test_unsupported_model_type_is_named_before_sizes_are_compared(paths, unsupported, capsys):
    line = one_line_error(capsys, ["generate", "--target", str(unsupported["neox"]), "--draft", str(paths["draft"]),
                                   "--prompt", "x"], "target model at")
    assert "model type 'gpt_neox' (GPTNeoXForCausalLM)" in line and "supported: gpt2, llama, mistral, qwen2" in line
    assert "output sizes" not in line


def test_unsupported_model_option_is_one_line(paths, unsupported, capsys):
    one_line_error(capsys, ["generate", "--target", str(paths["target"]), "--draft", str(unsupported["gelu"]),
                            "--prompt", "def add(a, b):", "--max-new-tokens", "2"],
                   "the lean runtime cannot run this pair: activation 'gelu' is not supported")


def test_supported_model_types_agree_with_the_runtime():
    from types import SimpleNamespace

    from specgrove.executor.loading import SUPPORTED_MODEL_TYPES
    from specgrove.executor.runtime import UnsupportedModelError, from_hf

    with pytest.raises(UnsupportedModelError) as info:
        from_hf(SimpleNamespace(config=SimpleNamespace(model_type="no-such-type")), 1)
    assert str(info.value).endswith("supported: " + ", ".join(SUPPORTED_MODEL_TYPES))


@pytest.mark.parametrize("device, message", [("tpu9", "--device 'tpu9' is not a device torch knows"),
                                             ("meta", "--device meta: specgrove runs on cpu, cuda or cuda:N"),
                                             ("cuda:99", "--device cuda:99")])
def test_unknown_device_is_one_line_before_loading(capsys, no_loading, device, message):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    one_line_error(capsys, ["generate", "--prompt", "x", "--device", device], message)


@pytest.mark.parametrize("command", ["generate", "bench"])
def test_cuda_graphs_on_without_cuda_is_one_line_before_loading(tmp_path, capsys, no_loading, command):
    args = ["generate", "--prompt", "x"] if command == "generate" else \
        ["bench", "--methods", "ar", "--prompts", str(write_prompts(tmp_path / "p.jsonl")), "--out", str(tmp_path / "out")]
    one_line_error(capsys, args + ["--cuda-graphs", "on"], "--cuda-graphs on needs a CUDA device, not --device cpu")


@pytest.mark.parametrize("where, message", [("dir", "is a directory"), ("under-file", "is not a directory")])
def test_unwritable_trace_is_one_line_before_loading(tmp_path, capsys, no_loading, where, message):
    (tmp_path / "file").write_text("x")
    trace = tmp_path if where == "dir" else tmp_path / "file" / "trace.jsonl"
    one_line_error(capsys, ["generate", "--prompt", "x", "--trace", str(trace)], f"--trace {trace}")
    for command in (["generate", "--prompt", "x"], ["bench", "--prompts", "p.jsonl", "--out", str(tmp_path / "o")]):
        one_line_error(capsys, [*command, "--trace", str(trace)], message)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_trace_in_a_read_only_directory(tmp_path, capsys, no_loading):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(capsys, ["generate", "--prompt", "x", "--trace", str(ro / "t.jsonl")], "--trace")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("methods", ["", ",", " , "])
def test_bench_refuses_an_empty_method_list(tmp_path, capsys, no_loading, methods):
    one_line_error(capsys, ["bench", "--prompts", "p.jsonl", "--out", str(tmp_path / "o"), "--methods", methods],
                   "--methods lists no method")
    assert not (tmp_path / "o").exists()


def test_bench_refuses_a_method_listed_twice(tmp_path, capsys, no_loading):
    one_line_error(capsys, ["bench", "--prompts", "p.jsonl", "--out", str(tmp_path / "o"), "--methods", "ar,dynamic,ar"],
                   "--methods lists 'ar' twice")


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
def test_seed_out_of_range_is_one_line(capsys, no_loading, seed):
    one_line_error(capsys, ["generate", "--prompt", "x", "--seed", seed, "--temperature", "0.5"],
                   f"--seed must be in 0..4294967295, got {seed}")


def test_broken_pipe_exits_quietly(paths):
    """``specgrove generate ... | head -c 10``: the reader is gone before the text comes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "specgrove.cli", "generate", *pair_args(paths), "--prompt",
                             "def add(a, b):", "--max-new-tokens", "20", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # closed early: every write to stdout is a broken pipe
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_a_one_token_prompt_measures_nothing_and_runs(paths, capsys):
    # The confidence map is measured teacher-forced on the prompt: one token gave nothing to
    # concatenate (a traceback); now the policy's defaults stand.
    assert main(["generate", *pair_args(paths), "--prompt", "x", "--max-new-tokens", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["token_ids"]) == 3


# ---- 2. runaway --------------------------------------------------------------------------------------


def test_kv_caches_that_do_not_fit_are_refused_before_allocating(paths, tmp_path, capsys, monkeypatch):
    from specgrove.executor import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    allocated = []
    monkeypatch.setattr("specgrove.executor.runtime.kv.KVCache.__init__",
                        lambda *a, **k: allocated.append(1) or pytest.fail("allocated"))
    one_line_error(capsys, ["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "2"],
                   "the KV caches for a batch of 1 need")
    prompts = write_prompts(tmp_path / "p.jsonl")
    line = one_line_error(capsys, ["bench", *pair_args(paths), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
                                   "--methods", "ar", "--batch-sizes", "1,2"], "the KV caches for a batch of 2 need")
    assert "but only 1.0 KiB is available on cpu" in line
    assert not allocated and not (tmp_path / "o").exists()
