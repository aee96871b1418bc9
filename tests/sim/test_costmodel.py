"""The roofline cost model against calculations done by hand from the preset numbers.

H100-SXM: 989e12 FLOP/s dense bf16, 3.35e12 B/s, 250 us per forward; mfu 0.6, mbu 0.8, so
593.4e12 FLOP/s and 2.68e12 B/s achievable. Llama-3.1-8B: 8.03e9 parameters in bf16
(16.06e9 bytes), 32 layers, hidden 4096, 8 KV heads of 128: 2 * 32 * 8 * 128 * 2 = 131072 KV
bytes per token. NVLink: 450e9 B/s, 2 us. The expected values below are that arithmetic,
written out; none of it calls the model's own formula.
"""

import pytest

from specgrove.sim.build import resolve
from specgrove.sim.costmodel import RooflineCostModel
from specgrove.sim.hardware import GPUS, LINKS
from specgrove.sim.models import MODELS

OVERHEAD = 250e-6
FLOPS = 989e12 * 0.6  # achievable FLOP/s
BW = 3.35e12 * 0.8  # achievable bytes/s
WEIGHTS = 8.03e9 * 2  # bytes
KV = 2 * 32 * 8 * 128 * 2  # bytes per cached token
PER_TOKEN_FLOPS = 2 * 8.03e9
ATTN_FLOPS = 4 * 32 * 4096  # per new token per cached token of its request


def h100(tp=1, link=None):
    return RooflineCostModel(GPUS["H100-SXM"], MODELS["llama-3.1-8b"], MODELS["llama-3.2-1b"], tp=tp,
                             draft_tp=tp, tp_link=link)


def test_the_constants_are_the_presets():
    assert MODELS["llama-3.1-8b"].kv_bytes_per_token == KV == 131072
    assert MODELS["llama-3.1-8b"].weight_bytes == WEIGHTS


def test_one_decode_token_is_memory_bound():
    # Compute 16.06e9 / 593.4e12 = 27 us; memory (16.06e9 + 131072) / 2.68e12 = 5.993 ms.
    expected = OVERHEAD + (WEIGHTS + KV) / BW
    assert expected == pytest.approx(6.2426e-3, rel=1e-4)
    assert h100().target_forward_s(1, 1, 0) == pytest.approx(expected, rel=1e-12)


def test_context_is_read_every_forward():
    # 8192 cached tokens add 8192 * 131072 B = 1.07 GB of KV reads: +0.401 ms.
    assert h100().target_forward_s(1, 1, 8192) == pytest.approx(OVERHEAD + (WEIGHTS + 8193 * KV) / BW, rel=1e-12)
    assert h100().target_forward_s(1, 1, 8192) - h100().target_forward_s(1, 1, 0) == pytest.approx(4.0066e-4, rel=1e-4)


def test_attention_flops_grow_with_each_requests_context():
    # 4 requests, 1024 new tokens over 16384 cached (4096 each): compute bound,
    # (2 * 8.03e9 * 1024 + 4 * 32 * 4096 * 1024 * 4096) / 593.4e12 = 31.42 ms.
    compute = (PER_TOKEN_FLOPS * 1024 + ATTN_FLOPS * 1024 * 16384 / 4) / FLOPS
    assert compute > (WEIGHTS + (16384 + 1024) * KV) / BW
    assert compute == pytest.approx(31.42e-3, rel=1e-3)
    assert h100().target_forward_s(4, 1024, 16384) == pytest.approx(OVERHEAD + compute, rel=1e-12)
    # The same tokens spread over 16 requests see a quarter of the cache each.
    spread = (PER_TOKEN_FLOPS * 1024 + ATTN_FLOPS * 1024 * 16384 / 16) / FLOPS
    assert h100().target_forward_s(16, 1024, 16384) == pytest.approx(OVERHEAD + spread, rel=1e-12)


def test_compute_memory_crossover():
    # 2P t / F' = (P w + t kv) / B'  =>  t* = (P w / B') / (2P / F' - kv / B') = 221.8 tokens.
    crossover = (WEIGHTS / BW) / (PER_TOKEN_FLOPS / FLOPS - KV / BW)
    assert crossover == pytest.approx(221.8, abs=0.1)
    cost = h100()
    for t in (1, 64, 221):  # memory bound: flat but for the new tokens' KV writes
        assert cost.target_forward_s(1, t, 0) == pytest.approx(OVERHEAD + (WEIGHTS + t * KV) / BW, rel=1e-12)
    for t in (222, 512, 4096):  # compute bound: 27 us per token
        assert cost.target_forward_s(1, t, 0) == pytest.approx(OVERHEAD + PER_TOKEN_FLOPS * t / FLOPS, rel=1e-12)
    slope = cost.target_forward_s(1, 512, 0) - cost.target_forward_s(1, 256, 0)
    assert slope / 256 == pytest.approx(27.064e-6, rel=1e-4)


def test_tensor_parallel_splits_work_and_pays_the_all_reduce():
    # TP 4 over NVLink: weights and FLOPs split 4 ways; two ring all-reduces per layer of
    # 2 d t bytes each: 2 (n-1) alpha + 2 (n-1)/n * m / beta = 12 us + 1.5 * 8192 / 450e9 for
    # one token; times 64 all-reduces = 769.7 us.
    per_allreduce = 2 * 3 * 2e-6 + 2 * 3 / 4 * (2 * 4096 * 1) / 450e9
    comm = 2 * 32 * per_allreduce
    assert comm == pytest.approx(769.75e-6, rel=1e-4)
    cost = h100(tp=4, link=LINKS["nvlink"])
    assert cost.target_comm_s(1) == pytest.approx(comm, rel=1e-12)
    assert cost.target_forward_s(1, 1, 0) == pytest.approx(OVERHEAD + (WEIGHTS + KV) / BW / 4 + comm, rel=1e-12)
    # 256 tokens: the all-reduce bandwidth term grows with the message.
    comm_256 = 2 * 32 * (2 * 3 * 2e-6 + 2 * 3 / 4 * (2 * 4096 * 256) / 450e9)
    assert cost.target_comm_s(256) == pytest.approx(comm_256, rel=1e-12)
    compute_256 = PER_TOKEN_FLOPS * 256 / (4 * FLOPS)
    memory_256 = (WEIGHTS + 256 * KV) / (4 * BW)
    assert cost.target_forward_s(1, 256, 0) == pytest.approx(OVERHEAD + max(compute_256, memory_256) + comm_256, rel=1e-12)
    # No link, or one GPU: no all-reduce.
    assert h100(tp=1, link=LINKS["nvlink"]).target_comm_s(256) == 0.0


def test_a_scenario_wires_tp_and_the_intra_node_link():
    _, built = resolve({
        "cluster": {"gpu": "H100-SXM", "gpus_per_node": 8, "intra_link": "nvlink"},
        "models": {"pair": "llama-3.1-8b/3.2-1b"},
        "deployment": {"tp": 4},
    })
    comm = 2 * 32 * (2 * 3 * 2e-6 + 2 * 3 / 4 * (2 * 4096) / 450e9)
    assert built.cost.target_forward_s(1, 1, 0) == pytest.approx(OVERHEAD + (WEIGHTS + KV) / BW / 4 + comm, rel=1e-12)
