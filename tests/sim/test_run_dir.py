"""A Vidur-style run directory: latency CDFs and per-replica time series, and the series the
simulator samples at each step (one sample per step of each replica, as in its step trace)."""

import json

from sim_scenarios import small_scenario

from specgrove.sim.api import Result, run_scenario
from specgrove.trace import read_trace

PNG = b"\x89PNG\r\n\x1a\n"


def test_series_have_one_sample_per_step(tmp_path):
    scenario = small_scenario(duration_s=3.0, deployment__num_replicas=2, policies__router="power-of-two")
    trace = tmp_path / "t.jsonl"
    result = run_scenario(scenario, trace_path=trace)
    steps = read_trace(trace).steps
    assert sorted(result.series) == [0, 1]
    assert sum(len(s) for s in result.series.values()) == len(steps) > 0
    for s in result.series.values():
        data = s.to_dict()
        assert {len(v) for v in data.values()} == {len(s)}
        assert data["t_s"] == sorted(data["t_s"])
        assert all(0 <= u <= 1 for u in data["kv_use"]) and max(data["batch_size"]) >= 1
        assert min(data["queue_len"]) >= 0
    # The batch sizes the series saw are the trace's, step for step (in time order).
    merged = sorted((t, b) for s in result.series.values() for t, b in zip(s.t_s, s.batch_size))
    assert sorted(b for _, b in merged) == sorted(st.batch_size for st in steps)
    itl = result.summary["itl_s"]
    assert itl["mean"] > 0 and itl["p50"] <= itl["p99"]


def test_run_dir_has_the_plots(tmp_path):
    result = run_scenario(small_scenario(duration_s=2.0))
    out = result.write(tmp_path / "run", plots=True)
    for name in (*Result.FILES, *Result.PLOTS):
        assert (out / name).is_file(), name
    for name in Result.PLOTS:
        assert (out / name).read_bytes().startswith(PNG) and (out / name).stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total_throughput_tokens_per_s"] > summary["output_throughput_tokens_per_s"] > 0
    # Without plots (the default) the directory is as before.
    plain = result.write(tmp_path / "plain")
    assert sorted(p.name for p in plain.iterdir()) == sorted(Result.FILES)
