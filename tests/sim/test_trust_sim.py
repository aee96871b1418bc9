"""Issue 12 on the simulator side: no silent wrong answers, no runaway runs, no tracebacks.

Each test names the old behaviour it guards against: sweep variants that kept the base's
models or dropped unchanged tree options, requests longer than the context run silently,
trace rows dropped without a word, runs too large to finish, tracebacks on bad bytes or
bounds, a sweep killed by one variant, and results written over or half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from sim_scenarios import small

from specgrove.cli import main
from specgrove.commands.sim import short_table
from specgrove.results import atomic_path, check_out_dir, OutputPathError
from specgrove.sim.api import TooLargeError, prepare_sweep, run_scenario, run_sweep
from specgrove.sim.build import parse_scenario
from specgrove.sim.models import MODELS, PAIRS
from specgrove.sim.scenario import ScenarioError
from specgrove.sim.sweep import run_parallel

ROOT = Path(__file__).resolve().parents[2]


def write_trace(path: Path, rows: list[tuple[float, int, int]]) -> Path:
    path.write_text("".join(json.dumps({"arrival_s": t, "prompt_tokens": p, "output_tokens": o}) + "\n"
                            for t, p, o in rows))
    return path


def demo_toml(tmp_path: Path, body: str = "", name: str = "s.toml") -> Path:
    """The demo pair on one CPU "GPU": fast to simulate."""
    path = tmp_path / name
    path.write_text('seed = 1\nduration_s = 2.0\n' + body + '''
[cluster]
gpu = "cpu-2core"
num_nodes = 1
gpus_per_node = 2
intra_link = "shared-memory"

[models]
pair = "demo"

[deployment]
max_batch = 8
''' + ('' if "[workload]" in body else '''
[workload]
rate = 5.0
prompt = { dist = "uniform", low = 16, high = 64 }
output = { dist = "fixed", value = 16 }
''') + '''
[policies]
tree = "chain"
tree_options = { length = 3 }
tree_budget = 3
''')
    return path


def sim(*argv) -> int:
    return main(["sim", *map(str, argv), "--no-progress"])


# -- 1 and 2: each sweep variant is the scenario it claims to be ---------------------------------

def test_varying_the_pair_resolves_each_variants_own_target_and_draft():
    # Old: the variant kept the base pair's target and draft, swapping only acceptance numbers.
    base = parse_scenario(small())
    variants = prepare_sweep(base, {"models.pair": ["llama-3.1-8b/3.2-1b", "llama-2-7b/68m"]})
    for v in variants:
        pair = PAIRS[v.overrides["models.pair"]]
        assert (v.scenario.models.target, v.scenario.models.draft) == (pair.target, pair.draft)
        assert (v.built.cost.target.name, v.built.cost.draft.name) == (pair.target, pair.draft)
    # Naming target or draft too keeps what was named.
    (v,) = prepare_sweep(base, {"models.pair": ["llama-2-7b/68m"], "models.draft": ["llama-3.2-1b"]})
    assert (v.scenario.models.target, v.scenario.models.draft) == ("llama-2-7b", "llama-3.2-1b")


def test_sweep_writes_each_variants_resolved_scenario_beside_its_results(tmp_path, capsys):
    base = demo_toml(tmp_path)
    out = tmp_path / "sweep"
    assert main(["sweep", str(base), "--vary", "workload.rate=2,4", "--out", str(out), "--processes", "1"]) == 0
    entries = json.loads((out / "sweep.json").read_text())
    for entry, rate in zip(entries, (2, 4)):
        scenario = json.loads((out / entry["scenario"]).read_text())
        assert scenario["workload"]["rate"] == rate and entry["status"] == "ok"
        assert json.loads((out / "variants" / entry["variant"] / "summary.json").read_text()) == entry["summary"]
    # A variant's scenario.json is a scenario: sim runs it and gets that variant's numbers.
    again = tmp_path / "again"
    assert sim(out / entries[1]["scenario"], "--out", again) == 0
    assert json.loads((again / "summary.json").read_text()) == entries[1]["summary"]


def test_switching_to_the_same_tree_policy_keeps_its_options():
    # Old: any policies.tree override dropped tree_options, even naming the base's own policy.
    base = parse_scenario(small(policies__tree_options={"length": 3}))
    same, other = prepare_sweep(base, {"policies.tree": ["chain", "dynamic"]})
    assert same.scenario.policies.tree_options == {"length": 3}
    assert other.scenario.policies.tree_options == {}  # another policy: its own defaults
    (kept,) = prepare_sweep(base, {"policies.scheduler": ["fcfs"], "policies.tree": ["chain"]})
    assert kept.scenario.policies.tree_options == {"length": 3}


# -- 3: context length, clamped lengths -----------------------------------------------------------

def test_every_model_preset_has_a_context_length():
    assert all(m.max_positions >= 512 for m in MODELS.values())
    assert MODELS["demo-target"].max_positions == 512  # assets/demo/*/config.json


def test_a_request_longer_than_the_context_is_rejected_and_counted(tmp_path, capsys):
    # Old: a 700-token request ran on the demo pair, whose context is 512 positions.
    trace = write_trace(tmp_path / "t.jsonl", [(0.0, 500, 200), (0.01, 100, 20)])
    path = demo_toml(tmp_path, f'[workload]\narrival = "trace"\ntrace = "{trace}"\n')
    assert sim(path, "--out", tmp_path / "out") == 0
    table = capsys.readouterr().out
    assert "requests rejected          1 (1 context length)" in table
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_rejected"] == 1 and summary["rejected"] == {"context_length": 1, "kv_capacity": 0}
    assert summary["num_finished"] == 1
    rows = (tmp_path / "out" / "requests.csv").read_text().splitlines()
    assert "prompt + output 700 tokens > context 512 of demo-target/demo-draft" in rows[1]


def test_lengths_clamped_at_their_max_are_counted(tmp_path, capsys):
    # Old: outputs drawn above max were cut to it without a word.
    path = demo_toml(tmp_path, '[workload]\nrate = 5.0\nprompt = { dist = "fixed", value = 32 }\n'
                               'output = { dist = "lognormal", median = 20, sigma = 1.0, max = 20 }\n')
    result = run_scenario(str(path))
    n = result.summary["num_requests"]
    clamped = result.summary["clamped"]
    assert clamped["prompt"] == 0
    assert 0 < clamped["output"] < n  # about half the draws land above the median
    assert clamped["output"] == sum(r["output_tokens"] == 20 for r in result.requests)
    assert "lengths clamped" in short_table(result.summary, result.run)


# -- 4: trace rows after duration_s -----------------------------------------------------------------

def test_trace_rows_after_duration_are_warned_about_and_counted(tmp_path, capsys):
    # Old: rows after duration_s were dropped silently.
    trace = write_trace(tmp_path / "t.jsonl", [(0.0, 20, 8), (0.5, 20, 8), (3.0, 20, 8)])
    path = demo_toml(tmp_path, f'[workload]\narrival = "trace"\ntrace = "{trace}"\n')
    assert sim(path, "--out", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert err.startswith("specgrove: warning: workload.trace: 1 of 3 rows arrive after duration_s = 2 s")
    assert len(err.splitlines()) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["arrivals_after_horizon"] == 1 and summary["num_requests"] == 2


def test_the_trace_example_replays_its_whole_trace(capsys):
    result = run_scenario(ROOT / "examples" / "trace_replay.toml")
    assert result.summary["num_requests"] == 40 and result.summary["arrivals_after_horizon"] == 0


# -- 5: the sim table --------------------------------------------------------------------------------

def test_sim_table_shows_rejections_and_the_draft_gpus_utilisation(tmp_path, capsys):
    assert sim(ROOT / "examples" / "trace_replay.toml") == 0
    table = capsys.readouterr().out
    assert "requests rejected" in table
    line = next(l for l in table.splitlines() if l.startswith("GPU / draft GPU / TP link"))
    assert line.split()[-5].endswith("%") and line.split()[-5] != "0%"  # the separate draft's GPU
    assert sim(demo_toml(tmp_path)) == 0
    assert "/ shared /" in capsys.readouterr().out  # the draft shares the target's GPU


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

def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


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


def test_a_bad_json_scenario_is_one_line(tmp_path, capsys):
    bad = tmp_path / "scenario.json"
    bad.write_text("[1, 2]")
    assert sim(bad) == 2
    assert one_error_line(capsys) == f"specgrove: error: {bad}: a scenario must be a JSON table of fields, got list\n"
    bad.write_text("{nope")
    assert sim(bad) == 2
    assert one_error_line(capsys).startswith(f"specgrove: error: {bad}: not valid JSON: ")


def test_check_out_dir_with_a_marker(tmp_path):
    (tmp_path / "bench.json").write_text("{}")
    with pytest.raises(OutputPathError, match="already holds another run's results"):
        check_out_dir(tmp_path, "--out", marker="bench.json")
    assert check_out_dir(tmp_path, "--out", marker="bench.json", overwrite=True) == tmp_path
