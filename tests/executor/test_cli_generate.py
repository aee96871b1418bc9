"""``specgrove generate`` end to end on a saved tiny pair, and its one-line errors."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json

from saved_pair import make_pair

from specgrove.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("pair"))


def pair_args(paths, draft="draft"):
    return ["--target", str(paths["target"]), "--draft", str(paths[draft])]


def test_generate_json_and_trace(paths, capsys, tmp_path):
    trace = tmp_path / "trace.jsonl"
    rc = main(["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "12",
               "--json", "--trace", str(trace), "--method", "dynamic"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["token_ids"]) == 12
    assert set(out["stats"]) >= {"steps", "tau", "tokens_per_s", "draft_ms", "verify_ms"}
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    steps = [line for line in lines if line["kind"] == "step"]
    assert steps and set(steps[0]) >= {"v", "step", "start_s", "end_s", "batch_size", "tokens_in_forward",
                                       "context_tokens", "draft_rounds", "round_widths", "draft_ms",
                                       "verify_ms", "other_ms", "requests", "method"}
    assert set(steps[0]["requests"][0]) >= {"request_id", "tree_size", "depth", "accepted_len", "emitted", "parents"}
    assert sum(r["emitted"] for s in steps for r in s["requests"]) == 11  # the first token comes from the prefill
    assert [line["kind"] for line in lines].count("prefill") == 1
    assert [line["kind"] for line in lines].count("request") == 1
    from specgrove.trace import read_trace

    assert len(read_trace(trace).steps) == len(steps)


def test_generate_streams_text(paths, capsys):
    assert main(["generate", *pair_args(paths), "--prompt", "class Point:", "--max-new-tokens", "5",
                 "--method", "sequoia", "--temperature", "0.7", "--top-p", "0.9"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("class Point:")
    assert "tau" in captured.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "/nonexistent/t", "--draft", "/nonexistent/d"], "target model path '/nonexistent/t' is not a directory"),
        ("stranger", "tokenizers differ"),
        (["--prompt", "   "], "--prompt is empty"),
        (["--method", "bogus"], "unknown method 'bogus'; valid: ar, chain"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
        (["--prompt", "x " * 200], "exceeds the model context (128 tokens)"),
        (["--max-new-tokens", "ten"], "invalid int value: 'ten'"),
    ],
)
def test_bad_input_is_one_line(paths, capsys, extra, message):
    if extra == "stranger":
        argv = ["generate", *pair_args(paths, "stranger"), "--prompt", "x"]
    elif extra[0] == "--target":
        argv = ["generate", *extra, "--prompt", "x"]
    else:
        argv = ["generate", *pair_args(paths), "--prompt", "x", *extra]
        if extra[0] == "--prompt":
            argv = ["generate", *pair_args(paths), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("specgrove: error:"), err
    assert message in err[0]
