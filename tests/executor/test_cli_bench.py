"""``specgrove bench`` writes its three reports; bad prompt files are one-line errors."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json

from saved_pair import make_pair

from specgrove.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("pair"))


def test_bench_writes_reports(paths, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"text": "def add(a, b):"}\n\n{"text": "class Point:", "domain": "code"}\n')
    out = tmp_path / "out"
    rc = main(["bench", "--target", str(paths["target"]), "--draft", str(paths["draft"]), "--prompts", str(prompts),
               "--methods", "ar,dynamic,dynamic+greedy-global,hf-assisted", "--batch-sizes", "1,2", "--repeats", "2",
               "--max-new-tokens", "6", "--out", str(out), "--trace", str(out / "trace.jsonl")])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    rows = {(r["batch_size"], r["method"]): r for r in report["rows"]}
    assert set(rows) == {(1, "ar"), (1, "dynamic"), (1, "dynamic+greedy-global"), (1, "hf-assisted"),
                         (2, "ar"), (2, "dynamic"), (2, "dynamic+greedy-global")}
    assert rows[(1, "ar")]["speedup_vs_ar"] == 1.0
    assert len(rows[(2, "dynamic")]["tokens_per_s_runs"]) == 2
    assert rows[(1, "dynamic")]["outputs_equal_ar"] == 2  # greedy: same tokens as ar
    assert "| 2 | dynamic |" in (out / "bench.md").read_text()
    assert (out / "speedup.png").read_bytes()[:4] == b"\x89PNG"
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert {t["method"] for t in trace} == {"ar", "dynamic", "dynamic+greedy-global"}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ('{"text": "ok"}\nnot json\n', "p.jsonl:2: not valid JSON"),
        ('{"prompt": "x"}\n', "p.jsonl:1: each line needs a non-empty string field 'text'"),
        ("\n", "holds no prompts"),
    ],
)
def test_bad_prompt_files(paths, tmp_path, capsys, content, message):
    prompts = tmp_path / "p.jsonl"
    if content is not None:
        prompts.write_text(content)
    rc = main(["bench", "--target", str(paths["target"]), "--draft", str(paths["draft"]),
               "--prompts", str(prompts), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value, message", [("--methods", "ar,nope", "unknown method 'nope'"),
                                                   ("--batch-sizes", "1,x", "comma-separated integers"),
                                                   ("--batch-sizes", "0", "integers >= 1"),
                                                   ("--methods", "dynamic+nope", "unknown batch-budget policy 'nope'")])
def test_bad_flags(paths, tmp_path, capsys, flag, value, message):
    rc = main(["bench", "--prompts", "x.jsonl", "--out", str(tmp_path / "o"), flag, value])
    assert rc == 2 and message in capsys.readouterr().err
