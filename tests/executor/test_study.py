"""``specgrove study``: the real ``--quick`` path end to end (real runs of the demo pair and
the simulated clusters), the report's files, and one-line errors for bad input."""

from __future__ import annotations

import csv
import math
import re
import time

import pytest

pytest.importorskip("torch")

from specgrove.cli import main  # noqa: E402
from specgrove.study.report import FIGURES, real_ratios  # noqa: E402
from specgrove.study.settings import METHODS, QUICK  # noqa: E402
from specgrove.study.simulated import speedups  # noqa: E402


def rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "quick"
    started = time.perf_counter()
    assert main(["study", "--out", str(out), "--quick"]) == 0
    return out, time.perf_counter() - started


def test_quick_study_writes_report_figures_and_csvs(quick):
    out, seconds = quick
    assert seconds < 180, f"study --quick took {seconds:.0f} s"
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert sorted(images) == sorted(f for f, _, _ in FIGURES.values())
    for name in images:
        assert (out / name).is_file() and (out / name).stat().st_size > 10_000, name
    for name in set(re.findall(r"`([\w.]+\.csv)`", report)):
        assert (out / name).is_file(), name
    # Every figure's caption names its data and the command that made it.
    for number, (file, data, _) in enumerate(FIGURES.values(), 1):
        caption = next(line for line in report.splitlines() if line.startswith(f"*Figure {number}."))
        assert f"Data: `{data}`" in caption and f"Made by: `specgrove study --out {out} --quick`" in caption
    assert re.search(r"Run time: \d+ s in all", report)


def test_quick_study_covers_the_grid(quick):
    out, _ = quick
    real = rows(out / "real.csv")
    cells = {(r["domain"], float(r["temperature"]), int(r["batch_size"]), r["method"]) for r in real}
    assert cells == {(d, t, b, m) for d in QUICK.domains for t in QUICK.temperatures for b in QUICK.batch_sizes
                     for m in METHODS}
    for r in real:
        assert float(r["tokens_per_s"]) > 0 and float(r["tau"]) >= 1.0
        if r["method"] == "ar":
            assert float(r["tau"]) == 1.0 and float(r["speedup_vs_ar"]) == 1.0
        if float(r["temperature"]) == 0:  # greedy: lossless, token for token
            done, total = r["outputs_equal_ar"].split("/")
            assert done == total
        else:
            assert r["outputs_equal_ar"] == ""
    sim = rows(out / "sim.csv")
    assert {r["pair"] for r in sim} == {p.pair for p in QUICK.sim_pairs}
    assert {r["experiment"] for r in sim} == {"load", "tp", "placement", "batch-budget"}
    assert all(int(r["num_finished"]) == int(r["num_requests"]) > 0 for r in sim)


def test_speedup_and_ratio_arithmetic():
    sim = [{"experiment": "load", "pair": "p", "x_field": "workload.rate", "x": 2.0, "policy": policy,
            "e2e_mean_s": e2e, "tpot_p50_s": tpot, "throughput_tokens_per_s": tps}
           for policy, e2e, tpot, tps in (("static", 3.0, 0.02, 100.0), ("dynamic", 2.0, 0.01, 125.0),
                                          ("ar", 4.0, 0.04, 90.0))]
    got = {(s["dynamic"], s["baseline"]): s for s in speedups(sim)}
    assert set(got) == {("dynamic", "static"), ("dynamic", "ar")}
    assert got["dynamic", "static"]["e2e_speedup"] == pytest.approx(1.5)
    assert got["dynamic", "static"]["tpot_speedup"] == pytest.approx(2.0)
    assert got["dynamic", "static"]["throughput_ratio"] == pytest.approx(1.25)
    real = [{"domain": "code", "temperature": 0.0, "batch_size": 1, "method": m, "tokens_per_s": t,
             "speedup_vs_ar": t / 100.0} for m, t in (("ar", 100.0), ("static", 80.0), ("dynamic", 120.0))]
    (ratio,) = real_ratios(real)
    assert ratio["fastest"] == "dynamic" and ratio["dynamic/static"] == pytest.approx(1.5)
    assert "dynamic-cost/static" not in ratio and not math.isnan(ratio["dynamic/ar"])


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0"], "--threads must be >= 1"),
    (["--prompts-dir", "/nonexistent"], "has no code.jsonl"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert main(["study", "--out", str(tmp_path / "s"), "--quick", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_out_is_a_file_or_holds_a_report(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["study", "--out", str(f), "--quick"]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.md").write_text("old")
    assert main(["study", "--out", str(tmp_path / "d"), "--quick"]) == 2
    assert "--overwrite" in capsys.readouterr().err
