"""On a GPU (skipped elsewhere): the CuPy kernels build the tree layout, attend and compact the
KV cache with no host round trip. torch's sync debug mode turns any device-to-host sync inside
the block into an error, so a hidden ``.item()`` or ``.tolist()`` fails the test."""

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (the 'executor' extra)")

from specgrove.kernels import _cupy  # noqa: E402
from specgrove.kernels.backend import Kernels  # noqa: E402

pytestmark = pytest.mark.skipif(_cupy.unavailable("cuda") is not None,
                                reason=f"needs CUDA and CuPy: {_cupy.unavailable('cuda')}")


def _batch(device):
    # Three requests: trees of 5, 1 and 9 tokens (root first, parents before children).
    parents = [-1, 0, 0, 1, 1] + [-1] + [-1, 0, 1, 2, 0, 4, 4, 6, 7]
    starts = [0, 5, 6, 15]
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32, device=device)  # noqa: E731
    return i32(parents), i32(starts), i32([40, 3, 17]), i32([0, 1, 2])


def test_layout_attention_and_compaction_take_no_host_round_trip():
    kernels = Kernels("cupy")
    device = torch.device("cuda")
    parents, starts, prefix, rows = _batch(device)
    layers, heads, slots, dim = 2, 2, 128, 64
    k = torch.randn(layers, 4, heads, slots, dim, dtype=torch.float16, device=device)
    v = torch.randn_like(k)
    q = torch.randn(15, 2 * heads, dim, dtype=torch.float16, device=device)
    move_rows, src, dst = (torch.tensor(c, device=device) for c in ([0, 0, 2], [43, 44, 20], [41, 42, 18]))
    # Compile and load every module first: loading reads device properties, which is not a step.
    warm = kernels.attention_plan(kernels.tree_layout(parents, starts, prefix, rows, max_len=9), 26)
    kernels.tree_attention(q, k[0], v[0], warm)
    kernels.compact(k.clone(), v.clone(), move_rows, src, dst, max_moves_per_row=2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        layout = kernels.tree_layout(parents, starts, prefix, rows, max_len=9)
        plan = kernels.attention_plan(layout, num_keys=26)
        out = kernels.tree_attention(q, k[0], v[0], plan)
        kernels.compact(k, v, move_rows, src, dst, max_moves_per_row=2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == q.shape and torch.isfinite(out).all()
