"""Issue 12 on the simulator side: no runaway runs and no tracebacks. Runs too large to finish
are refused with their estimate before any work; bad bytes, bad JSON, a negative seed and extreme
sizes or shapes are one line and exit 2; one bad sweep variant (failing to build, raising, or its
worker process dying) fails alone while the others' results are written. Each test names the old
behaviour it guards against."""

from __future__ import annotations

import json

import pytest
from sim_cli import demo_toml, one_error_line, sim, write_trace
from sim_scenarios import small

from specgrove.cli import main
from specgrove.sim.api import TooLargeError, prepare_sweep, run_scenario, run_sweep
from specgrove.sim.build import parse_scenario
from specgrove.sim.scenario import ScenarioError
from specgrove.sim.sweep import run_parallel


# -- 6: runaway runs -----------------------------------------------------------------------------------

def test_a_run_too_large_is_refused_with_its_estimate(tmp_path, capsys):
    # Old: a huge but finite rate (or duration) ran silently for ever.
    path = demo_toml(tmp_path, "[workload]\nrate = 1e12\n")
    assert sim(path) == 2
    err = capsys.readouterr().err
    assert err == ("specgrove: error: this run would simulate about 2e+12 requests (workload.rate 1e+12/s over 2 s), "
                   "over the limit of 2,000,000: lower the rate or duration_s, or pass --max-requests N\n")
    path = demo_toml(tmp_path)
    assert sim(path, "--max-requests", 5) == 2  # 5 req/s x 2 s = 10 > 5
    assert "about 10 requests" in capsys.readouterr().err
    assert sim(path, "--max-requests", 50) == 0
    assert sim(path, "--max-requests", 0) == 2
    assert "--max-requests must be >= 1" in capsys.readouterr().err


def test_a_sweep_with_a_variant_too_large_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sweep", str(demo_toml(tmp_path)), "--vary", "workload.rate=1,1e9", "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.startswith("specgrove: error: variant workload.rate=1000000000.0: this run would simulate")
    assert not out.exists()


def test_trace_length_counts_against_the_limit(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", [(0.01 * i, 20, 8) for i in range(20)])
    s = parse_scenario(small(workload__arrival="trace", workload__trace=str(trace)))
    with pytest.raises(TooLargeError, match="about 20 requests"):
        run_scenario(s, max_requests=10)


@pytest.mark.timeout(60)
def test_a_tiny_arrival_window_does_not_crawl_through_the_drain(tmp_path):
    # Old: progress chunks were 1% of the arrival window, so a 1 ns window took ~1e10 chunks
    # to drain one request of ~20 ms.
    trace = write_trace(tmp_path / "t.jsonl", [(0.0, 20, 16)])
    path = demo_toml(tmp_path, f'[workload]\narrival = "trace"\ntrace = "{trace}"\n').read_text()
    (tmp_path / "s.toml").write_text(path.replace("duration_s = 2.0", "duration_s = 1e-9"))
    result = run_scenario(str(tmp_path / "s.toml"))
    assert result.summary["num_finished"] == 1


@pytest.mark.parametrize("field, value, message", [
    ("duration_s", 1e9, "duration_s: Input should be less than or equal to 100000000"),
    ("cluster__num_nodes", 10**9, "cluster.num_nodes: Input should be less than or equal to 4096"),
    ("policies__tree_budget", 10**7, "policies.tree_budget: Input should be less than or equal to 4096"),
    ("acceptance__num_samples", 10**9, "acceptance.num_samples: Input should be less than or equal to 100000"),
    ("deployment__mfu", 1e-300, "deployment.mfu: Input should be greater than or equal to 0.001"),
    ("workload__prompt", {"dist": "uniform", "low": 1, "high": 10**30}, "workload.prompt.high: Input should be less than or equal to 10000000"),
])
def test_sizes_that_would_never_finish_are_refused(field, value, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(**{field: value}))
    assert str(info.value) == message


def test_huge_domain_weights_do_not_overflow():
    # Old: weights summing past the float range gave NaN probabilities and a numpy traceback.
    s = parse_scenario(small(duration_s=1.0, workload__domains={"a": 1e308, "b": 1e308}))
    assert run_scenario(s).summary["num_requests"] > 0


# -- 7: bad bytes and bounds: one line, exit 2 ------------------------------------------------------------

def test_a_non_utf8_scenario_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    assert sim(bad) == 2
    assert one_error_line(capsys) == f"specgrove: error: {bad}: scenario is not UTF-8 text (at byte offset 11)\n"
    assert main(["sweep", str(bad), "--vary", "workload.rate=1,2"]) == 2
    one_error_line(capsys)


def test_a_non_utf8_trace_is_one_line(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(b'{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3, "domain": "\xff"}\n')
    assert sim(demo_toml(tmp_path, f'[workload]\narrival = "trace"\ntrace = "{trace}"\n')) == 2
    assert one_error_line(capsys) == f"specgrove: error: workload.trace: {trace}: trace is not UTF-8 text\n"


def test_a_negative_seed_is_one_line(tmp_path, capsys):
    # Old: numpy's "expected non-negative integer" traceback.
    assert sim(demo_toml(tmp_path), "--seed", -1) == 2
    assert one_error_line(capsys) == "specgrove: error: --seed must be >= 0, got -1\n"
    path = tmp_path / "neg.toml"
    path.write_text(demo_toml(tmp_path).read_text().replace("seed = 1", "seed = -3"))
    assert sim(path) == 2
    assert one_error_line(capsys) == "specgrove: error: seed: Input should be greater than or equal to 0\n"
    assert main(["sweep", str(demo_toml(tmp_path)), "--vary", "seed=1,-1"]) == 1  # one bad variant of two
    assert "variant seed=-1: seed: Input should be greater than or equal to 0" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    ({"workload__prompt": {"dist": "lognormal", "median": 100, "sigma": 50}}, "workload.prompt.sigma: Input should be less than or equal to 5"),
    ({"workload__output": {"dist": "lognormal", "median": 1e300}}, "workload.output.median: Input should be less than or equal to 10000000"),
    ({"workload__arrival": "gamma", "workload__cv": 1e3}, "workload.cv: Input should be less than or equal to 20"),
    ({"workload__arrival": "gamma", "workload__cv": 1e-200}, "workload.cv: Input should be greater than or equal to 0.001"),
])
def test_extreme_distribution_shapes_are_refused(overrides, message):
    # Old: sigma 50 overflowed math.exp, cv 1e-200 divided by zero: tracebacks mid-run.
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(**overrides))
    assert str(info.value) == message


def test_a_bad_json_scenario_is_one_line(tmp_path, capsys):
    bad = tmp_path / "scenario.json"
    bad.write_text("[1, 2]")
    assert sim(bad) == 2
    assert one_error_line(capsys) == f"specgrove: error: {bad}: a scenario must be a JSON table of fields, got list\n"
    bad.write_text("{nope")
    assert sim(bad) == 2
    assert one_error_line(capsys).startswith(f"specgrove: error: {bad}: not valid JSON: ")


# -- 8: one bad variant does not kill the sweep ---------------------------------------------------------

def test_a_variant_that_fails_to_build_is_reported_and_the_others_written(tmp_path, capsys):
    # Old: one bad value refused the whole sweep (or a worker's exception killed the pool).
    out = tmp_path / "out"
    assert main(["sweep", str(demo_toml(tmp_path)), "--vary", "deployment.tp=1,3", "--out", str(out),
                 "--processes", "1"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["specgrove: error: variant deployment.tp=3: deployment.tp: 3 does not divide gpus_per_node 2",
                   f"specgrove: error: 1 of 2 variants failed; the others' results are in {out}"]
    entries = json.loads((out / "sweep.json").read_text())
    assert [e["status"] for e in entries] == ["ok", "failed"] and entries[0]["summary"]["num_requests"] > 0
    assert (out / "sweep.png").exists() and (out / "variants" / "001" / "error.txt").exists()


def test_a_variant_that_raises_while_running_is_one_line(tmp_path, capsys, monkeypatch):
    import specgrove.sim.api as api

    real = api.run_scenario

    def flaky(scenario, **kwargs):
        if scenario.workload.rate == 4:
            raise RuntimeError("boom\nsecond line")
        return real(scenario, **kwargs)

    monkeypatch.setattr(api, "run_scenario", flaky)
    out = tmp_path / "out"
    assert main(["sweep", str(demo_toml(tmp_path)), "--vary", "workload.rate=2,4", "--out", str(out),
                 "--processes", "1"]) == 1
    err = capsys.readouterr().err
    assert "specgrove: error: variant workload.rate=4: RuntimeError: boom\n" in err and "Traceback" not in err
    assert "Traceback" in (out / "variants" / "001" / "error.txt").read_text()  # the detail is kept
    assert json.loads((out / "sweep.json").read_text())[0]["status"] == "ok"


def test_a_dead_worker_process_fails_only_its_own_job():
    # Old: multiprocessing.Pool.map waits for ever on a job whose worker died.
    from trust_workers import crashed, square_or_die

    results = run_parallel(square_or_die, [2, -1, 3], 2, crashed)
    assert results[1] == ("crashed", -1)
    assert results[0] in (("ok", 4), ("crashed", 2)) and results[2] in (("ok", 9), ("crashed", 3))


def test_run_sweep_keeps_results_of_variants_that_ran():
    variants = prepare_sweep(parse_scenario(small(duration_s=1.0)), {"deployment.tp": [1, 3]})
    assert variants[1].error is not None
    done = run_sweep(variants, processes=1)
    assert done[0].ok and not done[1].ok
