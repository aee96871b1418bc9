"""A separate draft (``draft_placement = "separate"``), sequential or in two ping-pong
micro-batches (``microbatches``), worked out by hand and checked for its properties.

Hand-computed scenario: one replica, a target GPU and a draft GPU, max_batch 2, the ``chain``
tree of 4 nodes and a draft that is always right (every node accepted: 5 tokens per decode
step). A at 0 and B at 0.005, each prompt 10, output 11. Affine costs, no context terms:

    target forward = 0.010 + 0.001 * tokens    draft step = 0.002 + 0.0005 * tokens
    transfer       = 0.001 per step

One request alone: prefill step draft 0.007, transfer 0.001, verify 0.020; decode step draft
4 x 0.0025 = 0.010, transfer 0.001, verify 0.015.

microbatches = 2 (A in micro-batch 0; B, arriving while A's half holds 1, in micro-batch 1).
Each resource serves one micro-batch at a time, first come first served:

    draft GPU:  A [0, .007]  B [.007, .014]  A [.028, .038]  B [.048, .058]  A [.063, .073]  B [.078, .088]
    link:       A [.007, .008]  B [.014, .015]  A [.038, .039]  B [.058, .059]  ...
    target:     A [.008, .028]  B [.028, .048]  A [.048, .063]  B [.063, .078]  A [.078, .093]  B [.093, .108]

    B's draft waits for A's (0.005 -> 0.007); from then on each half drafts while the other
    verifies, and a half emits every 0.015 = max(draft + transfer, verify) in turn.
    A: TTFT 0.028, E2E 0.093, TPOT 0.065 / 10;  B: queueing 0, TTFT 0.043, E2E 0.103, TPOT 0.006
    tau 5 each (2 decode steps of its own micro-batch, 10 tokens); end 0.108.
    busy: target 2 x 0.020 + 4 x 0.015 = 0.100, draft 2 x 0.007 + 4 x 0.010 = 0.054, link 0.006;
    both at once: 0.006 (B's prefill draft under A's verify) + 4 x 0.010 = 0.046.

microbatches = 1 (the old sequential step: draft, transfer, verify of the whole batch):

    [0, .028]     A prefills alone (B arrives at 0.005, mid-step)
    [.028, .071]  B prefills with A's decode: draft 0.010 + B's prefill draft 0.007, transfer
                  0.001, verify 10 + 5 tokens = 0.025
    [.071, .104]  both decode: draft 4 x (0.002 + 0.0005 x 2) = 0.012, transfer 0.001, verify 10 tokens 0.020
    [.104, .130]  B alone: 0.010 + 0.001 + 0.015
    A: TTFT 0.028, E2E 0.104, TPOT 0.076 / 10;  B: queueing 0.023, TTFT 0.066, E2E 0.125, TPOT 0.059 / 10
    busy: target 0.080, draft 0.046, never both at once.
"""

import json
from dataclasses import replace
from typing import get_args

import pytest
from sim_scenarios import small, small_scenario

from specgrove.cost import AffineCostModel
from specgrove.sim.api import resolve_any, run_scenario
from specgrove.sim.build import parse_scenario
from specgrove.sim.cluster import SimCluster
from specgrove.sim.pingpong import MicroBatch, Overlap, assign
from specgrove.sim.records import RequestRecord
from specgrove.sim.replica import Replica
from specgrove.sim.scenario import DeploymentSpec, ScenarioError
from specgrove.types import Request

COST = AffineCostModel(target_base_s=0.010, target_per_token_s=0.001, draft_base_s=0.002, draft_per_token_s=0.0005,
                       transfer_base_s=0.001)
EXACT = dict(abs=1e-12)


def hand_scenario(tmp_path, microbatches: int):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        json.dumps({"arrival_s": 0.0, "prompt_tokens": 10, "output_tokens": 11}) + "\n"
        + json.dumps({"arrival_s": 0.005, "prompt_tokens": 10, "output_tokens": 11}) + "\n"
    )
    return parse_scenario({
        "seed": 0,
        "duration_s": 1.0,
        "cluster": {"gpu": "cpu-2core", "num_nodes": 1, "gpus_per_node": 2},
        "models": {"pair": "demo"},
        "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 2, "draft_placement": "separate",
                       "draft_gpus": 1, "microbatches": microbatches},
        "workload": {"arrival": "trace", "trace": str(trace)},
        "acceptance": {"mode": "exact", "draft": {"confidence_mean": 1.0, "confidence_concentration": 0.0}},
        "policies": {"tree": "chain", "tree_options": {"length": 4}, "tree_budget": 4},
    })


def test_two_microbatches_overlap_draft_and_verify_as_computed_by_hand(tmp_path):
    result = run_scenario(hand_scenario(tmp_path, 2), cost_model=COST)
    a, b = result.requests
    assert (a["queueing_s"], a["tau"], b["queueing_s"], b["tau"]) == (0.0, 5.0, 0.0, 5.0)
    assert a["ttft_s"] == pytest.approx(0.028, **EXACT)
    assert a["e2e_s"] == pytest.approx(0.093, **EXACT)
    assert a["tpot_s"] == pytest.approx(0.0065, **EXACT)
    assert b["ttft_s"] == pytest.approx(0.043, **EXACT)
    assert b["e2e_s"] == pytest.approx(0.103, **EXACT)
    assert b["tpot_s"] == pytest.approx(0.006, **EXACT)
    s = result.summary
    assert s["sim_end_s"] == pytest.approx(0.108, **EXACT)
    assert s["throughput_tokens_per_s"] == pytest.approx(22 / 0.108, rel=1e-12)
    u = s["utilisation"]
    assert u["gpu"] == pytest.approx(0.100 / 0.108, rel=1e-12)
    assert u["draft_gpu"] == pytest.approx(0.054 / 0.108, rel=1e-12)
    assert u["draft_link"] == pytest.approx(0.006 / 0.108, rel=1e-12)
    assert u["overlap"] == pytest.approx(0.046 / 0.108, rel=1e-12)
    assert u["draft_overlap"] == pytest.approx(0.046 / 0.054, rel=1e-12)


def test_two_microbatches_step_time_estimate_is_a_halfs_cycle(tmp_path):
    # What a router sees as the step time: each half's cycle, waits for the other included
    # (A 0 -> .028, B .005 -> .048, then .035, .030, .030, .030), not the sum of its parts.
    scenario, built = resolve_any(hand_scenario(tmp_path, 2))
    cluster = SimCluster(scenario, replace(built, cost=COST), scenario.seed)
    cluster.env.run()
    expected = COST.target_forward_s(1, 5, 0)
    for cycle_s in (0.028, 0.043, 0.035, 0.030, 0.030, 0.030):
        expected += 0.05 * (cycle_s - expected)
    assert cluster.replicas[0].step_ema == pytest.approx(expected, abs=1e-12)


def test_one_microbatch_is_the_sequential_step_computed_by_hand(tmp_path):
    result = run_scenario(hand_scenario(tmp_path, 1), cost_model=COST)
    a, b = result.requests
    assert (a["queueing_s"], a["tau"], b["tau"]) == (0.0, 5.0, 5.0)
    assert a["ttft_s"] == pytest.approx(0.028, **EXACT)
    assert a["e2e_s"] == pytest.approx(0.104, **EXACT)
    assert a["tpot_s"] == pytest.approx(0.0076, **EXACT)
    assert b["queueing_s"] == pytest.approx(0.023, **EXACT)
    assert b["ttft_s"] == pytest.approx(0.066, **EXACT)
    assert b["e2e_s"] == pytest.approx(0.125, **EXACT)
    assert b["tpot_s"] == pytest.approx(0.0059, **EXACT)
    s = result.summary
    assert s["sim_end_s"] == pytest.approx(0.130, **EXACT)
    u = s["utilisation"]
    assert u["gpu"] == pytest.approx(0.080 / 0.130, rel=1e-12)
    assert u["draft_gpu"] == pytest.approx(0.046 / 0.130, rel=1e-12)
    assert u["overlap"] == u["draft_overlap"] == 0.0


# A draft as costly as the verification, and forwards whose cost grows with the batch: a
# half-batch forward costs about half, so overlapping the halves hides most of the draft.
BALANCED = AffineCostModel(target_base_s=0.002, target_per_token_s=0.0002, draft_base_s=0.0005,
                           draft_per_token_s=0.00025, transfer_base_s=0.0002)


def balanced(microbatches: int, **overrides):
    return small_scenario(duration_s=3.0, workload__rate=40.0, deployment__draft_placement="separate",
                          deployment__microbatches=microbatches, **overrides)


def test_sequential_steps_never_overlap_and_ping_pong_does():
    one = run_scenario(balanced(1), cost_model=BALANCED).summary["utilisation"]
    two = run_scenario(balanced(2), cost_model=BALANCED).summary["utilisation"]
    # One micro-batch: the draft GPU, the link and the target take turns, so their busy
    # fractions add up to at most 1 (the load saturates the replica: nearly 1).
    assert one["overlap"] == 0.0
    assert 0.95 < one["gpu"] + one["draft_gpu"] + one["draft_link"] <= 1.0 + 1e-9
    assert two["gpu"] + two["draft_gpu"] > 1.2
    assert two["overlap"] == pytest.approx(two["gpu"] + two["draft_gpu"] - 1.0, abs=0.15)
    assert 0.3 < two["draft_overlap"] <= 1.0


def test_ping_pong_throughput_at_least_sequential_when_draft_costs_like_verify():
    one = run_scenario(balanced(1), cost_model=BALANCED).summary
    two = run_scenario(balanced(2), cost_model=BALANCED).summary
    assert one["num_finished"] == two["num_finished"] == one["num_requests"]
    assert two["throughput_tokens_per_s"] >= one["throughput_tokens_per_s"]
    # measured: ~1.35x; the overlap must really buy something here
    assert two["throughput_tokens_per_s"] > 1.2 * one["throughput_tokens_per_s"]
    assert two["tpot_s"]["mean"] < one["tpot_s"]["mean"]


def test_ping_pong_same_seed_same_numbers_other_seed_differs():
    s = small_scenario(duration_s=4.0, acceptance__mode="exact", deployment__num_replicas=2,
                       deployment__draft_placement="separate", policies__router="power-of-two")
    assert s.deployment.microbatches == 2  # the default
    first, second = run_scenario(s), run_scenario(s)
    assert first.summary == second.summary
    assert first.requests == second.requests
    assert first.summary["utilisation"]["overlap"] > 0
    other = run_scenario(s, seed=12).summary
    assert other["throughput_tokens_per_s"] != first.summary["throughput_tokens_per_s"]


def test_microbatches_are_ignored_when_the_draft_shares_the_gpus():
    one = run_scenario(small_scenario(duration_s=3.0, deployment__microbatches=1))
    two = run_scenario(small_scenario(duration_s=3.0, deployment__microbatches=2))
    assert one.summary == two.summary
    assert two.summary["utilisation"]["draft_gpu"] == two.summary["utilisation"]["overlap"] == 0.0


@pytest.mark.parametrize("value, message", [
    (3, "deployment.microbatches: Input should be less than or equal to 2"),
    (0, "deployment.microbatches: Input should be greater than or equal to 1"),
])
def test_bad_microbatches_names_the_field(value, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(deployment__draft_placement="separate", deployment__microbatches=value))
    assert str(info.value) == message


def test_draft_placement_takes_the_executors_words_only():
    # no alias for the simulator's older word: a scenario says what the executor's flag says
    assert get_args(DeploymentSpec.model_fields["draft_placement"].annotation) == ("same", "separate")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(deployment__draft_placement="remote"))
    assert str(info.value).startswith("deployment.draft_placement: Input should be 'same' or 'separate'")


def test_new_requests_join_the_microbatch_with_fewer():
    micro = [MicroBatch(0), MicroBatch(1)]
    here = micro[1]  # at its cycle start; micro-batch 0 is mid-step
    micro[0].batch.append([{"rid": 1}, {"rid": 2}])
    assign([{"rid": r} for r in (10, 11, 12, 13)], micro, here)
    # counts 2:0 -> 11 and 12 to micro-batch 1, then 2:2 ties to 0 (pending), then 3:2 -> 1
    assert here.batch.rid.tolist() == [10, 11, 13]
    assert [r["rid"] for r in micro[0].pending] == [12]
    assert micro[0].batch.rid.tolist() == [1, 2]  # mid-step: joins at its next cycle start
    micro[0].merge_pending()
    assert micro[0].batch.rid.tolist() == [1, 2, 12] and not micro[0].pending


def test_overlap_counts_each_shared_second_once():
    o = Overlap()
    o.busy("draft_gpu", 0.0, 2.0)
    o.busy("gpu", 1.0, 3.0)  # [1, 4] under draft [0, 2]: 1
    o.busy("draft_gpu", 2.0, 1.0)  # [2, 3] under gpu [1, 4]: 1
    o.busy("draft_gpu", 3.0, 3.0)  # [3, 6]: 1 more with gpu [1, 4]
    o.busy("gpu", 6.0, 1.0)  # starts when the draft stops: 0
    assert o.both_s == pytest.approx(3.0)


def test_ping_pong_preemption_keeps_every_request_and_memory_bounded(monkeypatch):
    # As test_properties' preemption test, with the draft separate and two micro-batches: a
    # micro-batch evicts only its own requests, and KV over both halves stays within capacity.
    s = small_scenario(duration_s=3.0, workload__rate=10.0, deployment__kv_memory_fraction=0.6,
                       deployment__draft_placement="separate",
                       workload__output={"dist": "uniform", "low": 200, "high": 400},
                       policies__scheduler="sjf", policies__scheduler_options={"preempt": True},
                       cluster__gpu="A10", models__pair="llama-2-7b/68m")
    peaks, preempt = [], Replica._preempt

    def spy(self, now, mb):
        preempt(self, now, mb)
        peaks.append((int(self._need().sum()), self.setup.kv_capacity_tokens))

    monkeypatch.setattr(Replica, "_preempt", spy)
    result = run_scenario(s)
    assert result.summary["num_finished"] == result.summary["num_requests"]
    assert sum(r["preemptions"] for r in result.requests) > 0
    assert all(need <= cap for need, cap in peaks)
    assert max(need / cap for need, cap in peaks) > 0.8


def test_kv_counts_both_halves_and_a_half_gives_up_its_last_request():
    # Each half holds one request of half the KV capacity (plus its tree): together they
    # overflow. The half at its step boundary evicts its own, even its last one, because the
    # other half still runs; a request alone in the replica is never evicted.
    scenario, built = resolve_any(small_scenario(deployment__draft_placement="separate", policies__scheduler="sjf",
                                                 policies__scheduler_options={"preempt": True}))
    cluster = SimCluster(scenario, built, scenario.seed)
    rep = cluster.replicas[0]
    cap, per = rep.setup.kv_capacity_tokens, rep.setup.tree_budget + 1
    ctx = cap // 2
    for rid, mb in enumerate(rep.micro):
        rep.requests[rid] = Request(rid, ctx, 10)
        cluster.ledger.arrive(RequestRecord(rid, 0, "default", 0.0, ctx, 10))
        mb.batch.append([{"rid": rid, "left": 10, "ctx": ctx, "reserved": ctx + 10 + per, "start_left": 10}])
    rep.micro[1].pending.append({"rid": 2, "prefill": 7, "reserved": 99})  # admitted, joins at its next step
    assert rep._need().tolist() == [ctx + per, ctx + per, 7 + per]
    rep._preempt(0.0, rep.micro[0])
    assert len(rep.micro[0].batch) == 0 and [r.request_id for r in rep.waiting] == [0]
    assert cluster.ledger.records[0].preemptions == 1
    rep.micro[1].pending.clear()
    rep.micro[1].batch.ctx[:] = cap  # alone and over capacity: kept (admission made sure it fits)
    rep._preempt(0.0, rep.micro[1])
    assert rep.micro[1].batch.rid.tolist() == [1]
