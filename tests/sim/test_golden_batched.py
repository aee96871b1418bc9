"""A second scenario worked out by hand: batching, a step that mixes a prefill with a decode,
partial acceptance, and a cost that grows with the cached context.

Setup: one replica, max_batch 2, the ``static`` tree with widths [2, 1] cut to 3 nodes. Two
draft domains, each with a fixed confidence (concentration 0):

* "easy": top-1 probability 1 (so the runner-up has 0), scale 1: the top-1 child is always
  accepted and the runner-up never. Tree: the root's two children and the first one's child;
  2 of its 3 nodes are accepted every step, 3 tokens emitted.
* "hard": top-1 probability 0.001 and gamma 2000: every acceptance probability underflows
  to exactly 0 (the same tree shape, the runner-up ranked first). 0 of 3 accepted, 1 emitted.

Both grow in two draft rounds: the root (1 draft token), then the two depth-1 nodes (2).

Requests (trace): A "easy" at 0.000, prompt 8, output 7; B "hard" at 0.010, prompt 4, output 3.

Cost model (affine, with context terms; c = cached tokens of the decoding requests):
    target forward = 0.010 + 0.001 * tokens + 0.0001 * c
    draft step     = 0.002 + 0.0005 * tokens + 0.00001 * c

Step 1 [0, 0.024]: A prefills alone (8 tokens), emits its first token.
    draft prefill 0.002 + 0.004 = 0.006;  verify 0.010 + 0.008 = 0.018
Step 2 [0.024, 0.05246]: B (arrived at 0.010) is admitted and prefills (4 tokens) in the same
    forward as A's tree (root + 3 nodes); A has 8 cached tokens. A emits 3.
    draft: rounds 0.002 + 0.0005 + 0.00008 = 0.00258 and 0.002 + 0.001 + 0.00008 = 0.00308,
           B's prefill 0.002 + 0.002 = 0.004: 0.00966
    verify: 8 tokens, c = 8: 0.010 + 0.008 + 0.0008 = 0.0188;  step 0.02846
Step 3 [0.05246, 0.07926]: both decode, c = 11 + 4 = 15. A emits 3 (done, 7 tokens); B emits 1.
    draft: 0.002 + 0.001 + 0.00015 = 0.00315 (2 tokens) and 0.002 + 0.002 + 0.00015 = 0.00415 (4)
    verify: 8 tokens: 0.010 + 0.008 + 0.0015 = 0.0195;  step 0.0268
Step 4 [0.07926, 0.09936]: B alone, c = 5: emits 1 (done, 3 tokens).
    draft 0.00255 + 0.00305 = 0.0056;  verify 4 tokens: 0.010 + 0.004 + 0.0005 = 0.0145

    A: queueing 0, TTFT 0.024, E2E 0.07926, TPOT 0.05526 / 6 = 0.00921, tau 6 / 2 = 3
    B: queueing 0.014, TTFT 0.04246, E2E 0.08936, TPOT 0.0469 / 2 = 0.02345, tau 2 / 2 = 1
    end 0.09936; 10 tokens; the GPU never idles.
"""

import json

import pytest

from specgrove.cost import AffineCostModel
from specgrove.sim.api import run_scenario
from specgrove.sim.build import parse_scenario

COST = AffineCostModel(target_base_s=0.010, target_per_token_s=0.001, draft_base_s=0.002, draft_per_token_s=0.0005,
                       target_per_context_token_s=0.0001, draft_per_context_token_s=0.00001)


def scenario(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        json.dumps({"arrival_s": 0.0, "prompt_tokens": 8, "output_tokens": 7, "domain": "easy"}) + "\n"
        + json.dumps({"arrival_s": 0.010, "prompt_tokens": 4, "output_tokens": 3, "domain": "hard"}) + "\n"
    )
    return parse_scenario({
        "seed": 0,
        "duration_s": 1.0,
        "cluster": {"gpu": "cpu-2core", "num_nodes": 1, "gpus_per_node": 1},
        "models": {"pair": "demo"},
        "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 2},
        "workload": {"arrival": "trace", "trace": str(trace)},
        "acceptance": {
            "mode": "exact",
            "draft": {"confidence_concentration": 0.0, "tail_ratio": 0.5},
            "domains": {"easy": {"confidence_mean": 1.0}, "hard": {"confidence_mean": 0.001, "gamma": 2000.0}},
        },
        "policies": {"tree": "static", "tree_options": {"widths": [2, 1]}, "tree_budget": 3},
    })


def test_batched_mixed_partial_scenario_matches_hand_computation(tmp_path):
    result = run_scenario(scenario(tmp_path), cost_model=COST)
    a, b = result.requests
    exact = dict(abs=1e-12)
    assert a["queueing_s"] == pytest.approx(0.0, **exact)
    assert a["ttft_s"] == pytest.approx(0.024, **exact)
    assert a["e2e_s"] == pytest.approx(0.07926, **exact)
    assert a["tpot_s"] == pytest.approx(0.05526 / 6, **exact)
    assert a["tau"] == 3.0
    assert b["queueing_s"] == pytest.approx(0.014, **exact)
    assert b["ttft_s"] == pytest.approx(0.04246, **exact)
    assert b["e2e_s"] == pytest.approx(0.08936, **exact)
    assert b["tpot_s"] == pytest.approx(0.02345, **exact)
    assert b["tau"] == 1.0
    s = result.summary
    assert s["sim_end_s"] == pytest.approx(0.09936, **exact)
    assert s["throughput_tokens_per_s"] == pytest.approx(10 / 0.09936, rel=1e-9)
    assert s["utilisation"]["gpu"] == pytest.approx(1.0, rel=1e-9)


def test_separate_prefill_matches_hand_computation(tmp_path):
    """The same requests with ``prefill = "separate"`` (the executor's structure): a new
    prompt gets a target and a draft forward of its own before the step, its first token comes
    out at their end, and it decodes in that very step.

    [0, 0.024]        A's prefill: target 0.010 + 0.008 = 0.018, draft 0.002 + 0.004 = 0.006
    [0.024, 0.04446]  A alone, c = 8: draft 0.00258 + 0.00308, verify 4 tokens 0.0148; A emits 3
    [0.04446, 0.06246] B's prefill (arrived at 0.010): target 0.014, draft 0.004
    [0.06246, 0.08926] both, c = 11 + 4 = 15: draft 0.00315 + 0.00415, verify 8 tokens 0.0195;
                      A emits 3 (done), B 1
    [0.08926, 0.10936] B alone, c = 5: draft 0.00255 + 0.00305, verify 0.0145; B done

    A: TTFT 0.024, E2E 0.08926, TPOT 0.06526 / 6, tau 3
    B: queueing 0.03446, TTFT 0.05246, E2E 0.09936, TPOT 0.0469 / 2, tau 1
    """
    from specgrove.trace import read_trace

    s = scenario(tmp_path)
    s.deployment.prefill = "separate"
    result = run_scenario(s, cost_model=COST, trace_path=tmp_path / "sim.jsonl")
    trace = read_trace(tmp_path / "sim.jsonl")
    a, b = result.requests
    exact = dict(abs=1e-12)
    assert a["ttft_s"] == pytest.approx(0.024, **exact)
    assert a["e2e_s"] == pytest.approx(0.08926, **exact)
    assert a["tpot_s"] == pytest.approx(0.06526 / 6, **exact)
    assert a["tau"] == 3.0
    assert b["queueing_s"] == pytest.approx(0.03446, **exact)
    assert b["ttft_s"] == pytest.approx(0.05246, **exact)
    assert b["e2e_s"] == pytest.approx(0.09936, **exact)
    assert b["tpot_s"] == pytest.approx(0.02345, **exact)
    assert b["tau"] == 1.0
    assert result.summary["sim_end_s"] == pytest.approx(0.10936, **exact)
    assert result.summary["utilisation"]["gpu"] == pytest.approx(1.0, rel=1e-9)
    # Traced as the executor traces it: prefill lines, and steps with no prefill inside.
    assert [(p.num_requests, p.prompt_tokens, p.target_ms, p.draft_ms) for p in trace.prefills] == [
        (1, 8, pytest.approx(18.0), pytest.approx(6.0)), (1, 4, pytest.approx(14.0), pytest.approx(4.0))]
    assert [(st.batch_size, st.num_prefill) for st in trace.steps] == [(1, 0), (2, 0), (1, 0)]
