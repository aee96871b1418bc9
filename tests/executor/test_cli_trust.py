"""Issue 12 on the executor's command line (``generate``, ``bench``, model loading): bad input
is one line and exit 2, never a traceback; no runaway allocation; results that are written
whole or not at all, with a manifest; honest spread on a noisy host; the tree knobs; the tree
view."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from saved_pair import make_pair, make_tokenizer, save_model

from specgrove.cli import build_parser, main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("pair"))


def pair_args(paths, target="target", draft="draft"):
    return ["--target", str(paths[target]), "--draft", str(paths[draft])]


def one_line_error(capsys, argv, message):
    """``argv`` exits 2 with exactly one stderr line, ``specgrove: error: ...`` holding ``message``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("specgrove: error:"), err
    assert message in err[0], err[0]
    return err[0]


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a pair fails the test: the checks under test must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("the models were loaded before the check")

    monkeypatch.setattr("specgrove.executor.loading.load_pair", boom)


def write_prompts(path: Path, texts=("def add(a, b):", "class Point:")) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


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


# ---- 1-4. bench: batch caps, outputs, manifest, spread ------------------------------------------------


@pytest.fixture(scope="module")
def bench_run(paths, tmp_path_factory):
    """One bench run on a loaded host (the load average is faked), batch sizes past the
    prompts, --repeats 1; returns (out dir, stderr, argv)."""
    tmp = tmp_path_factory.mktemp("bench")
    prompts = write_prompts(tmp / "p.jsonl")
    out = tmp / "out"
    argv = ["bench", *pair_args(paths), "--prompts", str(prompts), "--methods", "ar,dynamic", "--batch-sizes",
            "1,100000,2", "--repeats", "1", "--max-new-tokens", "3", "--out", str(out), "--depth", "2"]
    mp = pytest.MonkeyPatch()
    mp.setattr("specgrove.commands.bench.host_load", lambda: (7.5, 2))
    import io

    err = io.StringIO()
    mp.setattr(sys, "stderr", err)
    mp.setattr(sys, "stdout", io.StringIO())
    try:
        rc = main(argv)
    finally:
        mp.undo()
    assert rc == 0, err.getvalue()
    return out, err.getvalue(), argv


def test_bench_caps_batch_sizes_at_the_prompts(bench_run):
    out, err, _ = bench_run
    report = json.loads((out / "bench.json").read_text())
    assert report["config"]["batch_sizes"] == [1, 2]
    assert {r["batch_size"] for r in report["rows"]} == {1, 2}
    assert "batch size 100000 capped at 2, the number of prompts" in err


def test_bench_warns_of_a_loaded_host_and_marks_single_runs(bench_run):
    out, err, _ = bench_run
    assert "warning: the 1-minute load average was 7.50 at the start, over half of the 2 cores" in err
    md = (out / "bench.md").read_text()
    assert "**Warning: read these numbers with care.**" in md and "load average was 7.50" in md
    assert "| tokens/s range |" in md
    main_table = md.split("| batch | method |", 1)[1].split("\n\n", 1)[0]  # not the later tables
    rows = [line for line in main_table.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 4 and all("| single run |" in line for line in rows)


def test_bench_writes_a_manifest_that_reproduces_the_run(bench_run):
    out, _, argv = bench_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"command", "specgrove_version", "utc_time", "seed"} <= set(manifest)
    assert manifest["seed"] == 0 and manifest["utc_time"].endswith("+00:00")
    import shlex

    words = shlex.split(manifest["command"])
    assert words[:2] == ["specgrove", "bench"]
    again, first = (build_parser(a).parse_args(a) for a in (words[1:], argv))
    assert vars(again) == vars(first)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_bench_out_is_checked_before_the_work(paths, tmp_path, capsys, no_loading):
    prompts = write_prompts(tmp_path / "p.jsonl")
    base = ["bench", "--prompts", str(prompts), "--methods", "ar"]
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, [*base, "--out", str(tmp_path / "file")], "exists and is not a directory")
    one_line_error(capsys, [*base, "--out", str(tmp_path / "file" / "sub")], "is not a directory")
    done = tmp_path / "done"
    done.mkdir()
    (done / "bench.json").write_text("{}")
    one_line_error(capsys, [*base, "--out", str(done)], "already holds another run's results (bench.json)")


def test_bench_overwrite_replaces_another_run(paths, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ["def add(a, b):"])
    out = tmp_path / "o"
    out.mkdir()
    (out / "bench.json").write_text('{"old": true}')
    argv = ["bench", *pair_args(paths), "--prompts", str(prompts), "--methods", "ar", "--batch-sizes", "1",
            "--repeats", "2", "--max-new-tokens", "2", "--out", str(out)]
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert "rows" in json.loads((out / "bench.json").read_text())


def test_bench_reports_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from specgrove.executor import bench_report

    rows = [{"batch_size": 1, "method": "ar", "tau": 1.0, "tokens_per_s": 10.0, "tokens_per_s_runs": [9.0, 11.0],
             "tokens_per_s_min": 9.0, "tokens_per_s_max": 11.0, "tokens_per_s_spread": 11 / 9 - 1,
             "speedup_vs_ar": 1.0, "speedup_min": 0.9, "speedup_max": 1.1, "mean_tree_size": 0.0,
             "draft_ms_per_step": 0.0, "verify_ms_per_step": 1.0, "wall_ms_per_step": 1.0}]
    config = {"pair": "demo", "num_prompts": 1, "max_new_tokens": 2, "budget": 16, "batch_budget": "uniform",
              "repeats": 2, "seed": 0}
    out = tmp_path / "o"
    bench_report.write_report(out, rows, config, "specgrove bench")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"bench.json", "bench.md", "speedup.png", "manifest.json"}

    def fail(path, *args):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_report, "plot_speedup", fail)
    with pytest.raises(KeyboardInterrupt):
        bench_report.write_report(out, [dict(rows[0], tau=2.0)], config, "specgrove bench")
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # nothing replaced, no temporary file left


def test_spread_and_its_warning():
    from specgrove.executor.bench import RunResult, aggregate, spread_warnings

    def run(method, rep, tps):
        stats = {"tokens_per_s": tps, "tau": 1.0, "mean_tree_size": 0.0, "draft_ms": 0.0, "verify_ms": 1.0,
                 "target_forwards": 1, "wall_s": 0.1}
        return RunResult(method, 1, rep, stats, [[1, 2]])

    rows = aggregate([run("ar", 0, 100.0), run("dynamic", 0, 100.0), run("ar", 1, 110.0), run("dynamic", 1, 130.0),
                      run("ar", 2, 105.0), run("dynamic", 2, 120.0)])
    by = {r["method"]: r for r in rows}
    assert by["ar"]["tokens_per_s_min"] == 100.0 and by["ar"]["tokens_per_s_max"] == 110.0
    assert by["dynamic"]["tokens_per_s_spread"] == pytest.approx(0.30)
    assert by["dynamic"]["speedup_min"] == pytest.approx(100 / 105) and by["dynamic"]["speedup_max"] == pytest.approx(130 / 105)
    warnings = spread_warnings(rows)
    assert len(warnings) == 1 and warnings[0].startswith("batch 1 dynamic: tokens/s over 3 repeats ranges 100.0-130.0 (30.0% apart")
    single = aggregate([run("ar", 0, 100.0)])
    assert single[0]["tokens_per_s_spread"] is None and spread_warnings(single) == []


# ---- 5. tree knobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, knob", [("chain", "--topk"), ("ar", "--depth"), ("static", "--depth"),
                                          ("sequoia", "--topk")])
def test_a_knob_the_method_does_not_take_is_refused(capsys, no_loading, method, knob):
    one_line_error(capsys, ["generate", "--prompt", "x", "--method", method, knob, "3"],
                   f"{knob} does not apply to method {method}")


def test_bench_refuses_a_knob_no_method_takes(tmp_path, capsys, no_loading):
    one_line_error(capsys, ["bench", "--prompts", "p.jsonl", "--out", str(tmp_path / "o"), "--methods", "ar,static",
                            "--topk", "2"], "--topk does not apply to methods ar, static")


@pytest.mark.parametrize("knob, value", [("--topk", "0"), ("--depth", "-1"), ("--depth", "5000")])
def test_knobs_out_of_range(capsys, no_loading, knob, value):
    one_line_error(capsys, ["generate", "--prompt", "x", knob, value], f"{knob} must be in 1..1024, got {value}")


def test_topk_past_the_vocabulary(paths, capsys):
    one_line_error(capsys, ["generate", *pair_args(paths), "--prompt", "x", "--topk", "1000"],
                   "--topk 1000 exceeds the vocabulary")


def test_knobs_feed_the_tree_options():
    from specgrove.executor.methods import applicable_knobs, knob_options

    assert knob_options("dynamic", {"topk": 8, "depth": 3}) == {"topk": 8, "max_depth": 3}
    assert knob_options("chain", {"topk": None, "depth": 3}) == {"length": 3}
    assert knob_options("sequoia", {"depth": 5}) == {"max_depth": 5}
    with pytest.raises(ValueError, match="--topk does not apply to method 'sequoia'"):
        knob_options("sequoia", {"topk": 2})
    assert applicable_knobs("sequoia", {"topk": 2, "depth": 5}) == {"depth": 5}


@pytest.mark.parametrize("method, flags, depth, size", [("dynamic", ["--depth", "2", "--topk", "2"], 2, 6),
                                                        ("chain", ["--depth", "2"], 2, 2)])
def test_knobs_shape_the_trees(paths, capsys, tmp_path, method, flags, depth, size):
    trace = tmp_path / "t.jsonl"
    assert main(["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "6", "--method",
                 method, "--json", "--trace", str(trace), *flags]) == 0
    steps = [json.loads(line) for line in trace.read_text().splitlines() if '"kind": "step"' in line]
    shares = [r for s in steps for r in s["requests"]]
    assert shares and max(r["depth"] for r in shares) == depth and max(r["tree_size"] for r in shares) <= size


# ---- 6. see the tree ----------------------------------------------------------------------------------


def test_generate_shows_the_first_trees(paths, capsys):
    assert main(["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "6",
                 "--show-tree", "2", "--budget", "4"]) == 0
    out = capsys.readouterr().out
    text, _, trees = out.partition("\nstep 0: ")
    assert text.startswith("def add(a, b):") and trees
    assert "\nstep 1: " in trees and "\nstep 2: " not in trees
    outline = trees.split("\n\n")[0].splitlines()
    assert outline[0].endswith("emitted") and outline[1].startswith("'")  # the header, then the root
    assert sum(line.lstrip("│ ").startswith(("├─ ", "└─ ")) for line in outline[2:]) == 4  # --budget 4 nodes


def test_show_tree_refuses_json(capsys, no_loading):
    one_line_error(capsys, ["generate", "--prompt", "x", "--show-tree", "--json"], "--show-tree prints text; drop --json")
