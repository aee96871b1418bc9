"""CUDA graphs for the dense forwards (``runtime.graphs``), checked on the CPU by emulation: the
same buckets, padding and static buffers, run eagerly. What only a GPU can show (the capture
and replay themselves) is in ``test_cuda.py``."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch
from greedy_check import assert_same_greedy
from test_engine import setup  # noqa: F401 (the fixture: a tiny pair, 16 prompts, their target greedy)
from tiny_models import tiny

from specgrove.cost import AffineCostModel
from specgrove.executor.engine import EngineConfig, build_engine, capture_graphs
from specgrove.executor.forward_batch import ForwardBatch
from specgrove.executor.runtime import from_hf
from specgrove.executor.runtime.graphs import DecodeGraphs, GraphsUnavailable, row_buckets, wanted
from specgrove.trace import StepRecord


def test_wanted_by_device_and_placement():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not wanted("auto", cpu) and not wanted("off", cuda)
    assert wanted("auto", cuda) and wanted("on", cuda)
    assert not wanted("auto", cuda, tensor_parallel=2)
    with pytest.raises(GraphsUnavailable, match="CUDA device"):
        wanted("on", cpu)
    with pytest.raises(GraphsUnavailable, match="one process"):
        wanted("on", cuda, tensor_parallel=2)
    with pytest.raises(GraphsUnavailable, match="auto, on, off"):
        wanted("yes", cuda)


def test_row_buckets_golden():
    assert row_buckets(16) == (1, 2, 4, 8, 16)
    assert row_buckets(12) == (1, 2, 4, 8, 12)
    assert row_buckets(1) == (1,)


@pytest.fixture(scope="module")
def lean():
    torch.manual_seed(0)
    return from_hf(tiny("llama", seed=3, sharpness=8.0), 6, headroom=34)


def test_buckets_and_refusals(lean):
    graphs = DecodeGraphs(lean, emulate=True)
    assert graphs.rows == (1, 2, 4, 6)
    assert graphs.bucket(0, 1) == (1, 1)
    assert graphs.bucket(4, 3) == (6, 4)
    assert graphs.bucket(3, 16) == (4, 16)
    assert graphs.bucket(6, 1) is None and graphs.bucket(0, 17) is None
    with pytest.raises(GraphsUnavailable):
        DecodeGraphs(lean)  # a real capture needs CUDA


def _draft_like_batch(cache_len: int) -> tuple[ForwardBatch, list[tuple[int, int]]]:
    """Rows 2..4 of a 6-row cache: row 2 feeds three pending tokens, row 3 has no work this
    round (padded at its free slot), row 4 expands two tree nodes seeing an ancestor."""
    batch = ForwardBatch([12, 9, 20], first_row=2)
    batch.add(2, 9, [5, 6, 7], range(9, 12), range(9, 12), [range(9, 9 + j) for j in range(3)])
    batch.add(4, 17, [8, 9], [17, 18], [18, 19], [[17], [17, 18]])
    return batch, [(2, 2), (4, 0), (4, 1)]


def test_a_padded_bucket_gives_the_eager_logits_and_leaves_other_rows_alone(lean):
    """The graph's bucket is rows 0..5 and 4 tokens per row, attending over the whole cache row:
    the selected logits are the unpadded forward's. Besides what the eager forward wrote, the
    padded one writes only where nobody reads: a batch row's free slot (its padding tokens, as
    eagerly), and any row's padding slot (the rows outside the batch)."""
    torch.manual_seed(1)
    lean.cache.k.normal_()
    lean.cache.v.normal_()
    batch, select = _draft_like_batch(lean.cache.max_len)
    before_k, before_v = lean.cache.k.clone(), lean.cache.v.clone()
    want = lean.forward(**batch.build(lean.device, select=select))
    after_eager_k = lean.cache.k.clone()
    graphs = DecodeGraphs(lean, emulate=True)
    got = graphs.forward(batch, select)
    assert graphs.stats.replays == 1 and (6, 4) in graphs.graphs
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    pad = graphs.pad_slot
    changed = (lean.cache.k != after_eager_k).any(dim=(0, 2, 4))  # (rows, slots)
    allowed = torch.zeros_like(changed)
    allowed[:, pad] = True
    allowed[2, 12] = allowed[3, 9] = allowed[4, 20] = True  # the batch rows' free slots
    # The batch's own slots are written again, with the same K/V up to float rounding.
    torch.testing.assert_close(lean.cache.k[:, 2, :, 9:12], after_eager_k[:, 2, :, 9:12], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lean.cache.k[:, 4, :, 18:20], after_eager_k[:, 4, :, 18:20], atol=1e-5, rtol=1e-5)
    allowed[2, 9:12] = allowed[4, 18:20] = True
    assert not (changed & ~allowed).any(), f"written where a query may read: {(changed & ~allowed).nonzero().tolist()}"
    assert changed[[0, 1, 5], pad].all()  # the rows outside the batch wrote their padding slot
    own = (after_eager_k != before_k).any(dim=(0, 2, 4))
    assert own[2, 9:12].all() and own[4, 18:20].all()  # the eager forward wrote the batch's slots
    assert not own[[0, 1, 5]].any()


def test_a_batch_that_fits_no_bucket_runs_eagerly(lean):
    graphs = DecodeGraphs(lean, emulate=True)
    batch = ForwardBatch([30], first_row=0)
    batch.add(0, 0, list(range(1, 18)), range(17), range(17), [range(j) for j in range(17)])
    assert graphs.forward(batch, [(0, 16)]) is None and graphs.stats.eager == 1
    lean.graphs = graphs
    try:
        want = lean.forward(**batch.build(lean.device, select=[(0, 16)]))
        torch.testing.assert_close(lean.forward_batch(batch, [(0, 16)]), want)
    finally:
        lean.graphs = None


@pytest.mark.parametrize("method", ["ar", "chain", "dynamic", "dynamic-cost"])
def test_greedy_through_emulated_graphs_equals_target_greedy(setup, method):  # noqa: F811
    """Draft rounds and plain steps through the graphs' buckets (continuous batching at batch
    4: rows join and leave, so windows are wider than the rows with work), trees eagerly."""
    target, draft, prompts, lengths, reference = setup
    options = {"cost_model": AffineCostModel(5e-3, 1e-5, 2e-4, 0.0)} if method == "dynamic-cost" else None
    records = []
    engine = build_engine(target, draft, EngineConfig(method=method, budget=8, max_batch=4), options,
                          on_trace=records.append)
    capture_graphs(engine.target.model, engine.drafter.worker.model, emulate=True)
    ids = [engine.add_request(p, n) for p, n in zip(prompts, lengths)]
    out = engine.run()
    for p, i, want in zip(prompts, ids, reference):
        assert_same_greedy(target, p, out[i], want)
    stats = engine.graph_stats()
    assert stats["captured"] == 2 * len(row_buckets(4)) * 5  # both models, every bucket, up front
    assert stats["replays"] > 0
    steps = [r for r in records if isinstance(r, StepRecord)]
    plain = sum(1 for r in steps if r.tokens_in_forward == r.batch_size)
    assert stats["replays"] >= plain  # every plain step's target forward is a replay
    if method == "ar":  # no draft, every step plain: one replay each, nothing eager
        assert stats["eager"] == 0 and stats["replays"] == len(steps)
