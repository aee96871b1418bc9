"""The runtime's matrix products: oneDNN's packed GEMM where ``runtime.gemm`` says it pays,
``F.linear`` everywhere else, and the same numbers either way (to float32 rounding)."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch
import torch.nn.functional as F

from specgrove.executor.loading import load_pair
from specgrove.executor.parallel import tensor_parallel
from specgrove.executor.runtime import from_hf
from specgrove.executor.runtime.gemm import PACK_MIN_ELEMENTS, PACK_MIN_ROWS, Gemm, onednn_available

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def _weight(out_f=1024, in_f=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, in_f, generator=g) / in_f**0.5


@needs_onednn
def test_packed_products_equal_f_linear():
    w, b = _weight(), torch.randn(1024)
    gemm = Gemm("auto")
    gemm.pack([w])
    assert gemm.num_packed == 1
    for rows in (1, 2, 5, 16):
        x = torch.randn(2, rows, 256)
        torch.testing.assert_close(gemm.linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_one_row_takes_f_linear_and_several_take_the_packed_weight():
    """Bit-for-bit: one row is exactly F.linear's result, two or more exactly oneDNN's."""
    w = _weight()
    gemm = Gemm("auto")
    gemm.pack([w])
    packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
    one = torch.randn(1, 1, 256)
    assert torch.equal(gemm.linear(one, w), F.linear(one, w))
    several = torch.randn(1, PACK_MIN_ROWS, 256)
    assert torch.equal(gemm.linear(several, w), torch.ops.mkldnn._linear_pointwise(several, packed, None, "none", [], ""))


def test_only_large_float32_cpu_weights_are_packed():
    small = _weight(out_f=PACK_MIN_ELEMENTS // 256 - 1)  # one row short of the threshold
    large = _weight()
    gemm = Gemm("auto")
    gemm.pack([small, large, large.to(torch.float64), torch.randn(PACK_MIN_ELEMENTS), None])
    assert gemm.num_packed == (1 if onednn_available() else 0)
    x = torch.randn(4, 256)
    torch.testing.assert_close(gemm.linear(x, small), F.linear(x, small))  # not packed: plain
    plain = Gemm("torch")
    plain.pack([large])
    assert plain.num_packed == 0
    assert torch.equal(plain.linear(x, large), F.linear(x, large))


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="gemm must be one of auto, torch"):
        Gemm("mkl")


def test_a_weight_replaced_after_packing_is_not_served_from_the_old_packing():
    w = _weight()
    gemm = Gemm("auto")
    gemm.pack([w])
    other = _weight(seed=1)
    x = torch.randn(3, 256)
    torch.testing.assert_close(gemm.linear(x, other), F.linear(x, other))


@pytest.fixture(scope="module")
def pair():
    return load_pair()


@needs_onednn
def test_the_demo_target_packs_its_large_projections_and_keeps_its_logits(pair):
    auto = from_hf(pair.target, 1, 8, gemm="auto")
    plain = from_hf(pair.target, 1, 8, gemm="torch")
    # Per layer qkv (768 x 256), gate_up (1376 x 256), down (256 x 688), o (256 x 256: too
    # small); and the head (2048 x 256).
    assert auto.gemm.num_packed == 3 * auto.num_layers + 1
    assert plain.gemm.num_packed == 0
    ids = pair.tokenizer("def parse(self, text):\n    return")["input_ids"]
    with torch.no_grad():
        want = pair.target(torch.tensor([ids])).logits[0]
    n = len(ids)
    args = (torch.tensor([ids]), torch.arange(n)[None], torch.arange(n)[None],
            torch.tril(torch.ones(n, n, dtype=torch.bool))[None], n)
    for lean in (auto, plain):
        torch.testing.assert_close(lean.forward(*args)[0], want, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_sharding_repacks_the_shards(pair):
    lean = from_hf(pair.target, 1, 8, gemm="auto")
    before = lean.gemm.num_packed
    tensor_parallel.shard(lean, 0, 2, lambda x: x)
    # Each projection is halved: gate_up (688 x 256) still qualifies, qkv (384 x 256) and down
    # (256 x 344) no longer do; the head is not sharded.
    assert lean.gemm.num_packed == lean.num_layers + 1 < before
    for layer in lean.layers:
        for w in layer.values():
            if isinstance(w, torch.Tensor) and lean.gemm.eligible(w):
                assert lean.gemm._packed[id(w)][0] is w
