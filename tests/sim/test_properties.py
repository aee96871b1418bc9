"""Queueing-theory and monotonicity properties of whole simulated runs."""

from collections import Counter

import numpy as np
import pytest
from sim_scenarios import small, small_scenario

from specgrove.cost import AffineCostModel
from specgrove.sim import planner as planner_module
from specgrove.sim import records
from specgrove.sim.api import resolve_any, run_scenario


def test_md1_mean_wait_with_ar_and_a_fixed_step_time():
    # M/D/1: Poisson arrivals (25/s), one server (max_batch 1), a deterministic service time.
    # With ``ar`` and an affine cost (4 ms + 1 ms per token, no draft, no context term) every
    # request (prompt 6, output 3) takes a 10 ms prefill step and two 5 ms decode steps:
    # S = 20 ms, rho = 0.5. Pollaczek-Khinchine: Wq = rho S / (2 (1 - rho)) = 10 ms, and an
    # arrival finds the server idle with probability 1 - rho = 0.5 (PASTA).
    cost = AffineCostModel(target_base_s=0.004, target_per_token_s=0.001, draft_base_s=0.0, draft_per_token_s=0.0)
    s = small(duration_s=800.0, workload__rate=25.0, workload__prompt={"dist": "fixed", "value": 6},
              workload__output={"dist": "fixed", "value": 3}, deployment__max_batch=1,
              policies__tree="ar", policies__tree_options={}, policies__tree_budget=0)
    rows = run_scenario(s, cost_model=cost).requests
    wait = np.array([r["queueing_s"] for r in rows])
    sojourn = np.array([r["e2e_s"] for r in rows])
    assert len(rows) > 19_000
    np.testing.assert_allclose(sojourn - wait, 0.020, atol=1e-9)  # every service takes exactly S
    assert wait.mean() == pytest.approx(0.010, rel=0.08)  # measured: within 0.3%
    assert np.mean(wait < 1e-9) == pytest.approx(0.5, abs=0.02)


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


def decode_batches(monkeypatch) -> list[int]:
    """Spy: the number of decoding requests of every planned step."""
    seen, plan = [], planner_module.Planner.plan

    def spy(self, b):
        seen.append(len(b) - b.num_prefill)
        return plan(self, b)

    monkeypatch.setattr(planner_module.Planner, "plan", spy)
    return seen


CAPPED = dict(duration_s=20.0, workload__rate=40.0, policies__tree="dynamic",
              policies__tree_options={"topk": 3, "frontier": 3, "max_depth": 4}, policies__tree_budget=8,
              policies__batch_node_budget=16, acceptance__num_samples=1024)


def test_exact_and_tabulated_agree_where_the_node_cap_binds(monkeypatch):
    # 40 req/s keeps about six requests decoding, so the cap of 16 nodes (two requests' worth)
    # cuts the trees in most steps. The draft is charged nothing, so the two modes differ
    # only in how they draw acceptance (exact trees vs table rows at the share); see the
    # next test for the draft time.
    cost = AffineCostModel(target_base_s=0.006, target_per_token_s=3e-5, draft_base_s=0.0, draft_per_token_s=0.0,
                           target_per_context_token_s=5e-8)
    summaries = {}
    for mode in ("exact", "tabulated"):
        batches = decode_batches(monkeypatch)
        summaries[mode] = run_scenario(small(acceptance__mode=mode, **CAPPED), cost_model=cost).summary
        assert np.mean([n * 8 > 16 for n in batches if n]) > 0.75  # the cap binds (measured 85%)
    exact, table = summaries["exact"], summaries["tabulated"]
    uncapped = run_scenario(small(acceptance__mode="exact", **(CAPPED | {"policies__batch_node_budget": 0})),
                            cost_model=cost).summary
    assert exact["mean_tau"] < 0.8 * uncapped["mean_tau"]  # and cutting the trees costs tau (2.3 vs 3.2)
    assert table["mean_tau"] == pytest.approx(exact["mean_tau"], rel=0.05)  # measured 2.4%
    assert table["e2e_s"]["p50"] == pytest.approx(exact["e2e_s"]["p50"], rel=0.07)  # measured 2.4%
    assert table["e2e_s"]["mean"] == pytest.approx(exact["e2e_s"]["mean"], rel=0.07)


def test_exact_and_tabulated_agree_where_the_node_cap_binds_with_the_roofline():
    exact = run_scenario(small(acceptance__mode="exact", **CAPPED)).summary
    table = run_scenario(small(acceptance__mode="tabulated", **CAPPED)).summary
    assert table["mean_tau"] == pytest.approx(exact["mean_tau"], rel=0.05)
    assert table["e2e_s"]["p50"] == pytest.approx(exact["e2e_s"]["p50"], rel=0.10)


def test_preemption_keeps_every_request_and_memory_bounded(monkeypatch):
    # A tiny KV budget forces preemptions under an SJF scheduler that allows them; every
    # request must still finish, exactly once, with all its tokens, and at every step the
    # batch must fit in KV memory: each running request's cache, its prefill and its tree.
    # Outputs (200-400) dwarf prompts, so requests admitted on their prompt outgrow memory.
    s = small_scenario(duration_s=3.0, workload__rate=10.0, deployment__kv_memory_fraction=0.6,
                       workload__output={"dist": "uniform", "low": 200, "high": 400},
                       policies__scheduler="sjf", policies__scheduler_options={"preempt": True},
                       cluster__gpu="A10", models__pair="llama-2-7b/68m")
    _, built = resolve_any(s)
    capacity, per_request = built.kv_capacity_tokens, s.policies.tree_budget + 1
    peaks, finishes, ledgers = [], Counter(), []
    plan, finish = planner_module.Planner.plan, records.Ledger.finish

    def spy_plan(self, b):
        peaks.append(int((b.ctx + b.prefill).sum()) + len(b) * per_request)
        return plan(self, b)

    def spy_finish(self, request_id, now):
        finishes[request_id] += 1
        ledgers.append(self)
        return finish(self, request_id, now)

    monkeypatch.setattr(planner_module.Planner, "plan", spy_plan)
    monkeypatch.setattr(records.Ledger, "finish", spy_finish)
    result = run_scenario(s)
    assert result.summary["num_finished"] == result.summary["num_requests"]
    assert sum(r["preemptions"] for r in result.requests) > 0
    assert sorted(finishes) == [r["request_id"] for r in result.requests]
    assert set(finishes.values()) == {1}
    assert ledgers[0].tokens_emitted == sum(r["output_tokens"] for r in result.requests)
    assert max(peaks) <= capacity
    assert max(peaks) > 0.8 * capacity  # memory really was the limit
