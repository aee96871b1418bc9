"""Issue 12 on the simulator side: no silent wrong answers. Each sweep variant is the scenario it
claims to be (its own pair, its tree options, its resolved scenario written beside its results);
requests longer than the context are rejected and counted; lengths clamped at their max and trace
rows after ``duration_s`` are counted and warned about; the table shows rejections and the draft
GPU's utilisation. Each test names the old behaviour it guards against."""

from __future__ import annotations

import json

from sim_cli import ROOT, demo_toml, sim, write_trace
from sim_scenarios import small

from specgrove.cli import main
from specgrove.commands.sim import short_table
from specgrove.sim.api import prepare_sweep, run_scenario
from specgrove.sim.build import parse_scenario
from specgrove.sim.models import MODELS, PAIRS


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
