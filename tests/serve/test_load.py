"""``specgrove load`` against a real server: every request of a small Poisson workload is
accounted for, and the arrivals are the simulator's own for the same scenario and seed."""

import pytest

pytest.importorskip("torch", reason="the server needs torch (the 'executor' extra)")
pytest.importorskip("httpx", reason="load needs the 'serve' extra")

import csv
import json

from specgrove.cli import main
from specgrove.sim.api import run_scenario

SCENARIO = """
name = "load-test"
seed = 4
duration_s = 3.0
[cluster]
gpu = "cpu-2core"
gpus_per_node = 1
intra_link = "shared-memory"
[models]
pair = "demo"
[deployment]
max_batch = 16
[workload]
arrival = "poisson"
rate = 6.0
prompt = { dist = "uniform", low = 8, high = 40 }
output = { dist = "uniform", low = 4, high = 24 }
[policies]
tree = "dynamic"
tree_budget = 16
"""


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_load_accounts_for_every_request(server, tmp_path, capsys):
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    assert main(["load", str(scenario), "--url", server, "--out", str(out), "--no-progress"]) == 0
    real = rows(out / "requests.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "manifest.json").read_text())["command"].startswith("specgrove load ")
    sim = run_scenario(str(scenario))
    assert len(real) == summary["num_requests"] == sim.summary["num_requests"] > 5
    assert summary["num_finished"] == len(real) and all(r["error"] == "" for r in real)
    assert [r["request_id"] for r in real] == [str(i) for i in range(len(real))]
    # The same arrivals went to the server as to the simulator.
    for got, want in zip(real, sim.requests):
        assert float(got["arrival_s"]) == pytest.approx(want["arrival_s"])
        assert int(got["prompt_tokens"]) == want["prompt_tokens"] and int(got["output_tokens"]) == want["output_tokens"]
    assert set(real[0]) == set(sim.requests[0])  # the simulator's columns
    assert set(summary) == set(sim.summary)
    assert summary["throughput_tokens_per_s"] > 0 and summary["ttft_s"]["p50"] > 0
    # A second run into the same directory is refused, unless asked.
    assert main(["load", str(scenario), "--url", server, "--out", str(out), "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err


def test_failed_requests_are_recorded_not_dropped(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3}\n'
                     '{"arrival_s": 0.1, "prompt_tokens": 4, "output_tokens": 2, "prompt": "import os"}\n')
    out = tmp_path / "run"
    # Nothing listens on this port: both requests fail, and both are in the results.
    assert main(["load", str(trace), "--url", "http://127.0.0.1:9", "--out", str(out), "--no-progress",
                 "--timeout", "5"]) == 0
    got = rows(out / "requests.csv")
    assert len(got) == 2 and all(r["error"] for r in got)
    assert json.loads((out / "summary.json").read_text())["num_finished"] == 0
