"""Issue 12 on ``specgrove bench``'s results: batch sizes capped at the prompts, a warning and a
per-row mark on a loaded host, a manifest that reproduces the run, ``--out`` checked before the
work and kept unless ``--overwrite``, reports written whole or not at all, and the spread of
repeated runs."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json
import sys
from pathlib import Path

from cli_checks import no_loading, one_line_error, pair_args, paths, write_prompts  # noqa: F401 (fixtures)

from specgrove.cli import build_parser, main


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
