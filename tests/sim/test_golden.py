"""A single-GPU scenario small enough to work out by hand, matched exactly by the simulator.

Setup: one replica, max_batch 1 (so the second request must queue), the ``chain`` tree of 4
nodes, and a draft that is always sure (top-1 probability exactly 1, concentration 0) and
perfectly calibrated, so every node is accepted: each decode step emits 4 + 1 = 5 tokens.
Both requests: prompt 10 tokens, output 11 tokens. Arrivals (trace): A at 0, B at 0.005 s.

Cost model (affine, no context terms):
    target forward = 0.010 + 0.001 * tokens          draft step = 0.002 + 0.0005 * tokens

Prefill step (prompt 10 tokens, emits the first token):
    verify = 0.010 + 0.001 * 10 = 0.020;  draft prefill = 0.002 + 0.0005 * 10 = 0.007
    step   = 0.027
Decode step (chain of 4: four draft rounds of 1 token; verify root + 4 nodes = 5 tokens):
    draft  = 4 * (0.002 + 0.0005) = 0.010;  verify = 0.010 + 0.001 * 5 = 0.015
    step   = 0.025, emits min(5, remaining)

A: prefill 0 -> 0.027 (1 token), decode -> 0.052 (6), decode -> 0.077 (11, done).
B: waits from 0.005 until A leaves at 0.077; prefill -> 0.104, decode -> 0.129, -> 0.154.

    A: queueing 0, TTFT 0.027, E2E 0.077, TPOT (0.077 - 0.027) / 10 = 0.005, tau 10 / 2 = 5
    B: queueing 0.072, TTFT 0.099, E2E 0.149, TPOT 0.005, tau 5
    throughput: 22 tokens / 0.154 s; 2 requests / 0.154 s
"""

import json

import pytest

from specgrove.cost import AffineCostModel
from specgrove.sim.api import run_scenario
from specgrove.sim.build import parse_scenario

COST = AffineCostModel(target_base_s=0.010, target_per_token_s=0.001, draft_base_s=0.002, draft_per_token_s=0.0005)


def golden_scenario(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        json.dumps({"arrival_s": 0.0, "prompt_tokens": 10, "output_tokens": 11}) + "\n"
        + json.dumps({"arrival_s": 0.005, "prompt_tokens": 10, "output_tokens": 11}) + "\n"
    )
    return parse_scenario({
        "seed": 0,
        "duration_s": 1.0,
        "cluster": {"gpu": "cpu-2core", "num_nodes": 1, "gpus_per_node": 1},
        "models": {"pair": "demo"},
        "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 1},
        "workload": {"arrival": "trace", "trace": str(trace)},
        "acceptance": {"mode": "exact", "draft": {"confidence_mean": 1.0, "confidence_concentration": 0.0}},
        "policies": {"tree": "chain", "tree_options": {"length": 4}, "tree_budget": 4},
    })


def test_golden_single_gpu_matches_hand_computation(tmp_path):
    result = run_scenario(golden_scenario(tmp_path), cost_model=COST)
    a, b = result.requests
    exact = dict(abs=1e-12)
    assert a["queueing_s"] == pytest.approx(0.0, **exact)
    assert a["ttft_s"] == pytest.approx(0.027, **exact)
    assert a["e2e_s"] == pytest.approx(0.077, **exact)
    assert a["tpot_s"] == pytest.approx(0.005, **exact)
    assert a["tau"] == 5.0
    assert b["queueing_s"] == pytest.approx(0.072, **exact)
    assert b["ttft_s"] == pytest.approx(0.099, **exact)
    assert b["e2e_s"] == pytest.approx(0.149, **exact)
    assert b["tpot_s"] == pytest.approx(0.005, **exact)
    assert b["tau"] == 5.0
    s = result.summary
    assert s["sim_end_s"] == pytest.approx(0.154, **exact)
    assert s["throughput_tokens_per_s"] == pytest.approx(22 / 0.154, rel=1e-12)
    assert s["throughput_requests_per_s"] == pytest.approx(2 / 0.154, rel=1e-12)
    assert s["utilisation"]["gpu"] == pytest.approx(1.0, rel=1e-12)  # never idle in [0, 0.154]
