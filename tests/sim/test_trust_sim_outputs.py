"""Issue 12 on the simulator's outputs: ``--out`` is checked before the work, another run's
results (and an existing ``--trace``) are kept unless ``--overwrite``, which leaves nothing of the
older run; a manifest records how the results were made; a failed or interrupted write leaves no
half-written file; a run's ``scenario.json`` runs again from anywhere."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from sim_cli import demo_toml, sim, write_trace

from specgrove.cli import main
from specgrove.results import atomic_path, check_out_dir, OutputPathError


# -- 9: outputs -------------------------------------------------------------------------------------------

def test_out_is_checked_before_the_work(tmp_path, capsys):
    path = demo_toml(tmp_path)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, why in ((a_file, "exists and is not a directory"), (a_file / "sub", f"cannot create it, {a_file} is not a directory")):
        assert sim(path, "--out", out) == 2
        captured = capsys.readouterr()
        assert captured.err == f"specgrove: error: --out {out}: {why}\n" and captured.out == ""  # nothing ran
        assert main(["sweep", str(path), "--vary", "workload.rate=1", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"specgrove: error: --out {out}: {why}\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert sim(demo_toml(tmp_path), "--out", locked) == 2
        assert "directory is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_another_runs_results_are_kept_unless_overwrite(tmp_path, capsys):
    path = demo_toml(tmp_path)
    out = tmp_path / "out"
    assert sim(path, "--out", out) == 0
    first = (out / "summary.json").read_bytes()
    assert sim(path, "--out", out, "--seed", 5) == 2
    assert capsys.readouterr().err.startswith(f"specgrove: error: --out {out}: already holds another run's results "
                                              "(manifest.json, summary.json, requests.csv, scenario.json, run.json, "
                                              "cdf.png, timeseries.png)")
    assert (out / "summary.json").read_bytes() == first
    assert main(["sweep", str(path), "--vary", "workload.rate=1", "--out", str(out)]) == 2
    # --overwrite replaces them, and leaves no file of the older run behind.
    assert main(["sweep", str(path), "--vary", "workload.rate=1", "--out", str(out), "--overwrite", "--processes", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "sweep.json", "sweep.md", "sweep.png", "variants"]
    assert sim(path, "--out", out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["cdf.png", "manifest.json", "requests.csv", "run.json",
                                                     "scenario.json", "summary.json", "timeseries.png"]
    assert sim(path, "--out", out, "--overwrite", "--no-plots") == 0  # and an older run's plots go too
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "requests.csv", "run.json", "scenario.json", "summary.json"]


def test_manifest_records_how_the_results_were_made(tmp_path):
    path = demo_toml(tmp_path)
    out = tmp_path / "out"
    assert sim(path, "--out", out, "--seed", 4) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == f"specgrove sim {path} --out {out} --seed 4 --no-progress"
    assert manifest["seed"] == 4 and manifest["specgrove_version"]
    assert manifest["utc_time"].endswith("+00:00")
    assert manifest["scenario"] == json.loads((out / "scenario.json").read_text())
    assert main(["sweep", str(path), "--vary", "workload.rate=1,2", "--out", str(tmp_path / "sw"), "--processes", "1"]) == 0
    manifest = json.loads((tmp_path / "sw" / "manifest.json").read_text())
    assert manifest["vary"] == {"workload.rate": [1, 2]} and manifest["seed"] == 1
    assert [v["status"] for v in manifest["variants"]] == ["ok", "ok"] and manifest["scenario"]["seed"] == 1


def test_a_failed_write_leaves_no_half_written_file(tmp_path, monkeypatch):
    import specgrove.sim.api as api

    path = demo_toml(tmp_path)
    out = tmp_path / "out"
    assert sim(path, "--out", out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def half_then_interrupt(rows, p):
        Path(p).write_text("request_id,half")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "write_requests_csv", half_then_interrupt)
    assert sim(path, "--out", out, "--overwrite", "--seed", 5) == 130  # Ctrl-C while writing
    # Every file is the first run's: none half-written, none from the interrupted run.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.txt"]


def test_an_existing_trace_file_is_kept_unless_overwrite(tmp_path, capsys):
    # Old: the step trace was appended to whatever the file held: two runs in one file.
    path = demo_toml(tmp_path)
    trace = tmp_path / "steps.jsonl"
    assert sim(path, "--trace", trace) == 0
    lines = trace.read_text().splitlines()
    assert sim(path, "--trace", trace) == 2
    assert capsys.readouterr().err == f"specgrove: error: --trace {trace}: already exists; pass --overwrite to replace it\n"
    assert sim(path, "--trace", trace, "--overwrite") == 0
    assert trace.read_text().splitlines() == lines


def test_scenario_json_runs_again_from_anywhere(tmp_path, monkeypatch):
    # A relative trace path, resolved from the TOML's folder, is written absolute.
    src = tmp_path / "src"
    src.mkdir()
    write_trace(src / "t.jsonl", [(0.0, 20, 8), (0.3, 30, 8), (0.6, 20, 12)])
    demo_toml(src, '[workload]\narrival = "trace"\ntrace = "t.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    assert sim("src/s.toml", "--out", "first") == 0
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "first", moved)
    monkeypatch.chdir(src)
    assert sim(moved / "scenario.json", "--out", tmp_path / "second") == 0
    for name in ("summary.json", "requests.csv", "scenario.json"):
        assert (moved / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_check_out_dir_with_a_marker(tmp_path):
    (tmp_path / "bench.json").write_text("{}")
    with pytest.raises(OutputPathError, match="already holds another run's results"):
        check_out_dir(tmp_path, "--out", marker="bench.json")
    assert check_out_dir(tmp_path, "--out", marker="bench.json", overwrite=True) == tmp_path
