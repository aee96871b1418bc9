"""Queueing-theory and monotonicity properties of whole simulated runs."""

import pytest
from sim_scenarios import small_scenario

from specgrove.sim.api import run_scenario


def test_littles_law_on_a_poisson_run():
    # L (time-average requests in system over the arrival window) against lambda * W.
    # Requests still in flight at the window's end bias both sides a little; on a 200 s run
    # with sub-second sojourns the two agree to within 3%.
    s = small_scenario(duration_s=200.0, workload__rate=12.0)
    little = run_scenario(s).summary["little"]
    assert little["lambda"] > 10
    assert little["L"] == pytest.approx(little["lambda"] * little["W"], rel=0.03)


def test_adding_replicas_never_lowers_throughput_at_fixed_load():
    # 600 req/s (~24k tok/s offered) saturates one replica (~8k tok/s) and two; four keep up.
    # The arrival stream is the same in all three runs (its own random stream).
    throughputs = []
    for replicas in (1, 2, 4):
        s = small_scenario(duration_s=3.0, workload__rate=600.0, deployment__num_replicas=replicas)
        throughputs.append(run_scenario(s).summary["throughput_tokens_per_s"])
    assert throughputs[0] <= throughputs[1] <= throughputs[2]
    assert throughputs[2] > throughputs[0]  # and it is not flat: one replica was saturated


def test_same_seed_same_summary_different_seed_differs():
    s = small_scenario(duration_s=10.0, acceptance__mode="exact", policies__router="power-of-two", deployment__num_replicas=2)
    first, second = run_scenario(s).summary, run_scenario(s).summary
    assert first == second
    other = run_scenario(s, seed=12).summary
    assert other["throughput_tokens_per_s"] != first["throughput_tokens_per_s"]


def test_exact_and_tabulated_modes_agree_within_five_percent():
    # How far apart the two acceptance modes are: tabulated draws each request's accepted
    # length from exact samples; with a batch node cap, shares between table budgets come
    # from a mixture of the neighbouring tables. Measured gap here: ~1-3% on tau.
    base = dict(duration_s=20.0, policies__tree="dynamic", policies__tree_options={"topk": 3, "frontier": 3, "max_depth": 4},
                policies__tree_budget=8, policies__batch_node_budget=40, acceptance__num_samples=512)
    exact = run_scenario(small_scenario(acceptance__mode="exact", **base)).summary
    table = run_scenario(small_scenario(acceptance__mode="tabulated", **base)).summary
    assert table["mean_tau"] == pytest.approx(exact["mean_tau"], rel=0.05)
    assert table["throughput_tokens_per_s"] == pytest.approx(exact["throughput_tokens_per_s"], rel=0.05)
    assert table["e2e_s"]["p50"] == pytest.approx(exact["e2e_s"]["p50"], rel=0.10)  # measured ~3%


def test_preemption_keeps_every_request_and_memory_bounded():
    # A tiny KV budget forces preemptions under an SJF scheduler that allows them; every
    # request must still finish, exactly once.
    # Outputs (200-400) dwarf prompts, so requests admitted on their prompt outgrow memory.
    s = small_scenario(duration_s=3.0, workload__rate=10.0, deployment__kv_memory_fraction=0.6,
                       workload__output={"dist": "uniform", "low": 200, "high": 400},
                       policies__scheduler="sjf", policies__scheduler_options={"preempt": True},
                       cluster__gpu="A10", models__pair="llama-2-7b/68m")
    result = run_scenario(s)
    assert result.summary["num_finished"] == result.summary["num_requests"]
    assert sum(r["preemptions"] for r in result.requests) > 0
