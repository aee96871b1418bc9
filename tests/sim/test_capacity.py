"""``specgrove capacity`` and ``sim.capacity``: the SLO string, the bisection, the files."""

import json

import pytest

from specgrove.cli import main
from specgrove.sim.build import parse_scenario
from specgrove.sim.capacity import (Bound, SloSpecError, _evaluate, capacity, default_slo, parse_slo, plot,
                                    search)

TINY = """\
seed = 3
duration_s = 5.0
[cluster]
gpu = "H100-SXM"
gpus_per_node = 2
[models]
pair = "llama-3.1-8b/3.2-1b"
[deployment]
max_batch = 16
[workload]
rate = 4.0
prompt = {dist = "uniform", low = 64, high = 256}
output = {dist = "uniform", low = 16, high = 64}
[acceptance]
mode = "tabulated"
num_samples = 64
[policies]
tree = "chain"
tree_options = {length = 4}
tree_budget = 4
"""

SLO = [Bound("ttft_p99", 0.1), Bound("tpot_p99", 0.02)]


@pytest.fixture
def scenario():
    import tomllib

    return parse_scenario(tomllib.loads(TINY))


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_parse_slo_names_the_summary_figures():
    assert parse_slo("ttft_p99=0.5, tpot_p99=0.05") == [Bound("ttft_p99", 0.5), Bound("tpot_p99", 0.05)]
    assert parse_slo("e2e_p50=2,queueing_mean=0.1,slo_attainment=0.9")[2].is_lower
    for bad, words in [("ttft_p99", "expected METRIC=VALUE"), ("ttft_p42=1", "unknown metric 'ttft_p42'"),
                       ("latency=1", "unknown metric"), ("ttft_p99=fast", "not a number"),
                       ("ttft_p99=-1", "> 0"), ("slo_attainment=2", "in (0, 1]"),
                       ("ttft_p99=1,ttft_p99=2", "given twice"), (",", "no bound")]:
        with pytest.raises(SloSpecError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            parse_slo(bad)


def test_default_slo_is_the_scenarios_slo_at_p99(scenario):
    assert default_slo(scenario) == [Bound("ttft_p99", 1.0), Bound("tpot_p99", 0.1)]


def test_found_rate_meets_the_slo_and_a_rate_two_tolerances_above_does_not(scenario):
    tol = 0.05
    found = search(scenario, SLO, tolerance=tol, max_runs=12)
    assert found.converged and found.max_rate is not None
    assert len(found.probes) <= 12
    assert _evaluate(scenario, found.max_rate, SLO, None).meets
    assert not _evaluate(scenario, found.max_rate * (1 + 2 * tol), SLO, None).meets
    assert found.first_failing_rate <= found.max_rate * (1 + tol) + 1e-9


def test_search_is_deterministic_and_monotonic(scenario):
    a = search(scenario, SLO, max_runs=12)
    b = search(scenario, SLO, max_runs=12)
    assert a.to_dict() == b.to_dict()
    # Golden-ish: every probe below the answer met the SLO, every one above missed it.
    probes = sorted(a.probes, key=lambda p: p.rate)
    meets = [p.meets for p in probes]
    assert meets == sorted(meets, reverse=True)
    # A tighter SLO serves no more; a looser one no less.
    tight = search(scenario, [Bound("ttft_p99", 0.05), Bound("tpot_p99", 0.02)], max_runs=12)
    loose = search(scenario, [Bound("ttft_p99", 0.5), Bound("tpot_p99", 0.02)], max_runs=12)
    assert tight.max_rate <= a.max_rate <= loose.max_rate


def test_search_bounds(scenario):
    top = search(scenario, SLO, low=1.0, high=2.0)
    assert top.max_rate == 2.0 and "upper bound" in top.note and len(top.probes) == 2
    none = search(scenario, [Bound("ttft_p99", 1e-6)], low=1.0, high=2.0)
    assert none.max_rate is None and "not met" in none.note and len(none.probes) == 1
    spent = search(scenario, SLO, max_runs=3)
    assert len(spent.probes) == 3 and not spent.converged


def test_capacity_per_policy(scenario):
    results = capacity(scenario, SLO, ["chain", "static"], processes=1, max_runs=6)
    assert [r.policy for r in results] == ["chain", "static"]
    assert all(len(r.probes) <= 6 for r in results)


def test_plot_bars_start_at_zero(tmp_path, scenario):
    results = capacity(scenario, SLO, ["chain"], processes=1, max_runs=4)
    labels, heights = plot(results, tmp_path / "c.png", "ttft_p99<=0.1")
    assert labels == ["chain"] and heights == [results[0].max_rate or 0.0]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_cli_writes_capacity_files(tmp_path, scenario_file, capsys):
    out = tmp_path / "cap"
    rc = main(["capacity", str(scenario_file), "--slo", "ttft_p99=0.1,tpot_p99=0.02", "--policies", "chain,static",
               "--processes", "1", "--max-runs", "6", "--out", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"capacity.json", "capacity.md", "capacity.png", "manifest.json"}
    data = json.loads((out / "capacity.json").read_text())
    assert [p["policy"] for p in data["policies"]] == ["chain", "static"]
    assert data["slo"][0] == {"metric": "ttft_p99", "bound": "max", "limit": 0.1}
    assert "specgrove capacity" in json.loads((out / "manifest.json").read_text())["command"]
    assert "max rate" in capsys.readouterr().out
    # A second run into the same directory is refused before any run.
    assert main(["capacity", str(scenario_file), "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--slo", "ttft_p99"], "expected METRIC=VALUE"),
    (["--slo", "ttft_p42=1"], "unknown metric 'ttft_p42'"),
    (["--policies", "chain,nope"], "unknown tree policy 'nope'"),
    (["--tolerance", "0"], "--tolerance"),
    (["--low", "5", "--high", "2"], "--low 5 must be below --high 2"),
])
def test_cli_bad_input_is_one_line_and_exit_2(scenario_file, capsys, argv, words):
    assert main(["capacity", str(scenario_file), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("specgrove: error:") and words in err


# The sweep plot (sim/sweep.py): p50 and p99, units, bars for categories, y from zero.

def _sweep(scenario, vary):
    from specgrove.sim.api import prepare_sweep, run_sweep

    return run_sweep(prepare_sweep(scenario.model_copy(update={"duration_s": 2.0}), vary), processes=1)


def test_sweep_plot_numeric_x_is_lines_with_p50_and_p99(scenario, tmp_path):
    from specgrove.sim.sweep import plot, render

    variants = _sweep(scenario, {"workload.rate": [2.0, 4.0], "policies.tree": ["chain", "static"]})
    spec = plot(variants, tmp_path / "s.png", "workload.rate")
    assert (tmp_path / "s.png").stat().st_size > 0
    assert spec["kind"] == "line" and not spec["categorical"]
    latency = spec["panels"][0]
    assert latency["xlabel"] == "workload.rate (req/s)" and latency["ylabel"] == "latency (s)"
    assert [s["label"] for s in latency["series"]] == [
        "policies.tree=chain p50", "policies.tree=chain p99", "policies.tree=static p50", "policies.tree=static p99"]
    for s in latency["series"]:
        assert s["x"] == [2.0, 4.0]
    p50, p99 = latency["series"][:2]
    assert all(a <= b for a, b in zip(p50["y"], p99["y"]))
    assert all("(" in p["ylabel"] for p in spec["panels"])  # units on every axis
    import matplotlib.pyplot as plt

    fig = render(spec)
    try:
        for ax in fig.axes:
            assert ax.get_ylim()[0] == 0.0
            assert len(ax.lines) >= 2 and ax.get_legend() is not None
    finally:
        plt.close(fig)


def test_sweep_plot_categorical_x_is_bars_from_zero(scenario):
    import matplotlib.pyplot as plt

    from specgrove.sim.sweep import plot_spec, render

    variants = _sweep(scenario, {"policies.tree": ["chain", "static"]})
    spec = plot_spec(variants, "policies.tree")
    assert spec["kind"] == "bar" and spec["categories"] == ["chain", "static"]
    assert {s["stat"] for s in spec["panels"][1]["series"]} == {"p50", "p99"}
    fig = render(spec)
    try:
        for ax in fig.axes:
            assert ax.get_ylim()[0] == 0.0
            assert ax.containers and not ax.lines  # bars, not lines
            assert [t.get_text() for t in ax.get_xticklabels()] == ["chain", "static"]
    finally:
        plt.close(fig)


def test_sweep_progress_bar_on_stderr_when_a_terminal(monkeypatch, capsys):
    import io
    import sys

    from specgrove.sim.sweep import run_parallel

    assert run_parallel(abs, [-1, -2, 3], 1, None, progress="sweep") == [1, 2, 3]
    assert capsys.readouterr().err == ""  # not a terminal: no bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert run_parallel(abs, [-1, -2, 3], 1, None, progress="sweep") == [1, 2, 3]
    err = tty.getvalue()
    assert "sweep" in err and "/3" in err and "variant" in err
