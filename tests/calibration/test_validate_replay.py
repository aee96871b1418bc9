"""``validate`` and ``replay`` end to end on a tiny workload: real servers on 127.0.0.1, the
calibrated simulator beside them."""

import pytest

pytest.importorskip("torch", reason="the real runs need torch (the 'executor' extra)")
pytest.importorskip("fastapi", reason="the real runs need the 'serve' extra")

import json
from pathlib import Path

from specgrove.cli import main
from specgrove.serve.process import start_server, stop_server
from specgrove.trace import read_trace

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = """
seed = 2
duration_s = 1.5
[workload]
arrival = "gamma"
rate = 4.0
cv = 2.0
prompt = { dist = "lognormal", median = 20, sigma = 0.5, max = 60 }
output = { dist = "lognormal", median = 10, sigma = 0.5, max = 24 }
"""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A profile fitted on a bench of prose prompts (validation uses code: other prompts)."""
    root = tmp_path_factory.mktemp("val")
    trace = root / "cal.jsonl"
    assert main(["bench", "--pair", "demo", "--methods", "chain,dynamic", "--prompts",
                 str(ROOT / "benchmarks" / "prompts" / "prose.jsonl"), "--batch-sizes", "4", "--repeats", "1",
                 "--max-new-tokens", "16", "--trace", str(trace), "--out", str(root / "bench")]) == 0
    assert main(["calibrate", str(trace), "--out", str(root / "profile.json")]) == 0
    scenario = root / "scenario.toml"
    scenario.write_text('[cluster]\ngpu = "cpu-2core"\ngpus_per_node = 1\nintra_link = "shared-memory"\n'
                        '[models]\npair = "demo"\n[deployment]\nmax_batch = 4\n'
                        '[policies]\ntree = "dynamic"\ntree_budget = 16\n'
                        '[calibration]\nprofile = "profile.json"\n')
    workload = root / "workload.toml"
    workload.write_text(WORKLOAD)
    return root, scenario, workload


def test_validate_end_to_end(calibrated):
    root, scenario, workload = calibrated
    out = root / "validation"
    assert main(["validate", str(scenario), "--workload", str(workload), "--out", str(out), "--policies",
                 "chain,dynamic", "--loads", "0.5", "--prompts", str(ROOT / "benchmarks" / "prompts" / "code.jsonl"),
                 "--threads", "1", "--repeats", "2"]) == 0
    data = json.loads((out / "validation.json").read_text())
    assert json.loads((out / "manifest.json").read_text())["command"].startswith("specgrove validate ")
    assert [(r["load"], r["policy"]) for r in data["runs"]] == [(0.5, "chain"), (0.5, "dynamic")]
    for run in data["runs"]:
        assert run["repeats"] == 2
        for name in ("throughput_tokens_per_s", "tpot_mean_s", "e2e_p99_s"):
            m = run["metrics"][name]
            assert m["real"] > 0 and m["sim"] > 0 and m["rel_error"] == pytest.approx(m["sim"] / m["real"] - 1)
            assert m["real_spread"] >= 0
        # Each repeat's real server traced its own steps.
        for repeat in (0, 1):
            assert read_trace(out / "traces" / f"load0.5-{run['policy']}-r{repeat}.jsonl").steps
    ranking = data["ranking"]["0.5"]
    assert sorted(ranking["real"]) == sorted(ranking["sim"]) == ["chain", "dynamic"]
    assert ranking["kendall_tau"] in (-1.0, 1.0)
    text = (out / "validation.md").read_text()
    assert "cal.jsonl" in text and "code.jsonl" in text  # which data fitted, which validated
    assert (out / "cdf_load0.5.png").exists()


def test_real_values_are_the_median_of_the_repeats_and_the_spread_their_range():
    from specgrove.calibration.validate import RunPair, metrics_table

    def summary(tpot):
        return {"throughput_tokens_per_s": 100.0, "tpot_s": {"mean": tpot, "p50": tpot, "p99": tpot},
                "ttft_s": {"mean": 0.1, "p50": 0.1, "p99": 0.1}, "e2e_s": {"mean": 1.0, "p50": 1.0, "p99": 1.0},
                "queueing_s": {"mean": 0.0, "p99": 0.0}}

    runs = [summary(0.010), summary(0.014), summary(0.011)]
    pair = RunPair(0.5, "chain", runs[0], summary(0.0121), [], [], runs)
    m = metrics_table(pair)["tpot_mean_s"]
    assert m["real"] == pytest.approx(0.011)
    assert m["real_spread"] == pytest.approx(0.004 / 0.011)
    assert m["rel_error"] == pytest.approx(0.1)
    assert metrics_table(RunPair(0.5, "chain", runs[0], runs[0], [], []))["tpot_mean_s"]["real_spread"] is None


def test_replay_end_to_end(calibrated, tmp_path):
    root, scenario, workload = calibrated
    trace = tmp_path / "server-trace.jsonl"
    proc, url = start_server("--method", "dynamic", "--max-batch", "4", "--trace", str(trace))
    try:
        run = tmp_path / "run"
        assert main(["load", str(workload), "--url", url, "--out", str(run), "--no-progress"]) == 0
    finally:
        assert stop_server(proc) == 0
    out = tmp_path / "replay"
    assert main(["replay", str(run), "--scenario", str(scenario), "--trace", str(trace), "--vary",
                 "policies.tree=chain,dynamic", "--out", str(out)]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [v["vary"] for v in sweep] == [{"policies.tree": "chain"}, {"policies.tree": "dynamic"}]
    real = sum(1 for _ in open(run / "requests.csv")) - 1
    assert all(v["summary"]["num_requests"] == real for v in sweep)
    assert (out / "sweep.png").exists() and (out / "replay_profile.json").exists()
    assert json.loads((out / "manifest.json").read_text())["command"].startswith("specgrove replay ")
