"""Ragged tree attention for a verification forward: B requests' trees in one flat batch.

Request r's new tokens (its root, then its tree nodes) are the query rows
``query_starts[r]:query_starts[r+1]`` of ``q`` (T, Hq, D); no padding to the largest tree. Its
K/V live in row ``request_rows[r]`` of ``k_cache, v_cache`` (rows, Hk, max_len, D): the cached
prefix at slots [0, prefix_lens[r]), new token j at slot prefix_lens[r] + j (already written).
Query q sees every prefix slot, and new token j of its own request iff bit j of ``bitmask[q]``
is set (word j // 32, bit j % 32, LSB first): its ancestors, the root and itself.

Two implementations of that one definition, and the checks both share:

* ``tree_attention_reference``: torch only, the CPU path. It pads to (B, Tmax, Kmax) and makes
  one SDPA call; it is the definition the kernel is tested against.
* ``tree_attention_cupy``: the CUDA kernel of ``tree_attention.cu``: ragged, the bitmask read
  directly, online softmax over key tiles in fp32, no dense mask anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from specgrove.kernels import _cupy

# Head dims and dtypes the CUDA kernel is instantiated for (``tree_attn_<tag>_d<D>``).
KERNEL_HEAD_DIMS = (64, 128)
KERNEL_DTYPES = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32"}
# (query, head) rows one thread block holds (must match ROWS in the .cu file): fp32 keeps
# fewer so that its K/V tiles and queries still fit in 48 KiB of static shared memory.
KERNEL_ROWS = {torch.float16: 32, torch.bfloat16: 32, torch.float32: 16}
KERNEL_THREADS = 128
LOG2E = 1.4426950408889634


def check_inputs(q, k_cache, v_cache, query_starts, prefix_lens, request_rows, bitmask,
                 *, for_kernel: bool = False) -> None:
    """Raise ValueError on inputs that break the layout; shared by both paths.

    Shapes, dtypes and devices are always checked. The values of the index tensors (starts
    ascending from 0 to T, slices fitting their bitmask words and their cache row, rows in
    range) are checked only when they are on the CPU: on a GPU that would cost a host sync.
    """
    if q.dim() != 3:
        raise ValueError(f"q must be (T, Hq, D), got shape {tuple(q.shape)}")
    for name, c in (("k_cache", k_cache), ("v_cache", v_cache)):
        if c.dim() != 4:
            raise ValueError(f"{name} must be (rows, Hk, max_len, D), got shape {tuple(c.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} differ")
    num_tokens, num_q_heads, head_dim = q.shape
    num_rows, num_kv_heads, cache_len, cache_dim = k_cache.shape
    if cache_dim != head_dim:
        raise ValueError(f"head_dim of q ({head_dim}) and of the cache ({cache_dim}) differ")
    if num_kv_heads == 0 or num_q_heads % num_kv_heads:
        raise ValueError(f"q heads ({num_q_heads}) must be a multiple of kv heads ({num_kv_heads})")
    if not q.is_floating_point() or k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise ValueError(f"q, k_cache, v_cache must share one floating dtype, got "
                         f"{q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    index = {"query_starts": query_starts, "prefix_lens": prefix_lens, "request_rows": request_rows}
    for name, t in index.items():
        if t.dim() != 1 or t.dtype != torch.int32:
            raise ValueError(f"{name} must be a 1-D int32 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    num_requests = prefix_lens.shape[0]
    if query_starts.shape[0] != num_requests + 1 or request_rows.shape[0] != num_requests:
        raise ValueError(f"query_starts needs B+1 entries and request_rows B, with B = "
                         f"len(prefix_lens) = {num_requests}; got {query_starts.shape[0]} and "
                         f"{request_rows.shape[0]}")
    if bitmask.dim() != 2 or bitmask.dtype != torch.int32 or bitmask.shape[0] != num_tokens:
        raise ValueError(f"bitmask must be (T={num_tokens}, W) int32, got {bitmask.dtype} of "
                         f"shape {tuple(bitmask.shape)}")
    tensors = {"q": q, "k_cache": k_cache, "v_cache": v_cache, "bitmask": bitmask, **index}
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all inputs must be on one device, got {devices}")
    if for_kernel:
        if q.dtype not in KERNEL_DTYPES:
            raise ValueError(f"the CUDA kernel supports {list(KERNEL_DTYPES)}, got {q.dtype}")
        if head_dim not in KERNEL_HEAD_DIMS:
            raise ValueError(f"the CUDA kernel supports head_dim in {KERNEL_HEAD_DIMS}, got {head_dim}")
        if k_cache.stride(3) != 1 or v_cache.stride(3) != 1:
            raise ValueError("the CUDA kernel needs k_cache and v_cache contiguous along head_dim")
    if q.device.type == "cpu":  # numpy views: no copies, microseconds
        _check_values(query_starts.numpy(), prefix_lens.numpy(), request_rows.numpy(), num_tokens,
                      bitmask.shape[1], num_rows, cache_len)


def _check_values(starts, prefixes, rows, num_tokens, words, num_rows, cache_len) -> None:
    lens = np.diff(starts.astype(np.int64))
    if starts[0] != 0 or starts[-1] != num_tokens or (lens < 0).any():
        raise ValueError(f"query_starts must ascend from 0 to T={num_tokens}, got {starts.tolist()}")
    if lens.size == 0:
        return
    if lens.max() > 32 * words:
        raise ValueError(f"a slice of {lens.max()} tokens needs more than the bitmask's {words} words")
    if (prefixes < 0).any() or (prefixes + lens > cache_len).any():
        raise ValueError(f"prefix_lens + slice lengths must lie in [0, {cache_len}]")
    if (rows < 0).any() or (rows >= num_rows).any():
        raise ValueError(f"request_rows must lie in [0, {num_rows}), got {rows.tolist()}")


def _slice_lengths(query_starts: torch.Tensor, max_len: int | None) -> tuple[torch.Tensor, int]:
    lens = (query_starts[1:] - query_starts[:-1]).long()
    if max_len is None:
        max_len = int(lens.max()) if lens.numel() else 0
    return lens, max_len


@dataclass(frozen=True)
class PaddedGroup:
    """Requests attended by one SDPA call, padded to a common number of queries."""

    token: torch.Tensor  # (Bg * Tg,) token index of each padded query (clamped for padding)
    shape: tuple[int, int]  # (Bg, Tg)
    mask: torch.Tensor  # (Bg, 1, Tg, K) bool: prefix slots, and tree slots whose bit is set
    rows: torch.Tensor  # (Bg,) cache rows
    first_row: int | None  # rows are first_row, first_row + 1, ...: a view, not a gather


@dataclass(frozen=True)
class PaddedPlan:
    """What the reference needs besides q, K and V, built once per forward: every layer of the
    forward shares it, so the mask is unpacked from the bitmask once, not once per layer."""

    groups: tuple[PaddedGroup, ...]
    num_keys: int
    unpad: torch.Tensor  # (T,) each token's index in the groups' outputs, concatenated flat


def _consecutive(rows: torch.Tensor) -> int | None:
    """The first row when ``rows`` (on the CPU) are consecutive, else None."""
    listed = rows.tolist()
    return listed[0] if listed == list(range(listed[0], listed[0] + len(listed))) else None


def padded_plan(query_starts, prefix_lens, request_rows, bitmask, num_tokens: int,
                max_len: int | None = None, num_keys: int | None = None,
                cache_len: int | None = None) -> PaddedPlan | None:
    """The padded layout of a ragged batch (None when it has no tokens); ``max_len`` and
    ``num_keys`` spare the device-to-host syncs that would compute them.

    On the CPU, where reading the slice lengths costs no sync, a batch in which at most half
    the requests have a tree (a probe, or an uneven budget split) is attended in two groups:
    every request's root, then the tree tokens of the requests that have them. So a request
    without a tree is not padded to the largest one."""
    lens, t_max = _slice_lengths(query_starts, max_len)
    if num_tokens == 0 or t_max == 0:
        return None
    prefix = prefix_lens.long()
    # More keys than needed are harmless (masked); more than the cache holds are not there.
    num_keys = int((prefix + lens).max()) if num_keys is None else num_keys
    if cache_len is not None:
        num_keys = min(num_keys, cache_len)
    device = bitmask.device
    starts = query_starts[:-1].long()
    if t_max == 1:
        # Lone roots (a plain decoding step): query b sees the prefix slots and, if its own bit
        # is set, its own slot right after them. The general mask below, in a few ops.
        j = torch.arange(num_keys, device=device)[None, :] - prefix[:, None]          # (B, K)
        own = (bitmask[:, 0] & 1).bool()[:, None]
        mask = ((j < 0) | ((j == 0) & own))[:, None, None, :]                          # (B, 1, 1, K)
        rows = request_rows.long()
        first = _consecutive(rows) if device.type == "cpu" else None
        return PaddedPlan((PaddedGroup(starts, (len(starts), 1), mask, rows, first),), num_keys,
                          torch.arange(num_tokens, device=device))

    # Padded query grid (B, Tmax): token index of each (request, position), clamped for padding.
    t = torch.arange(t_max, device=device)
    is_real = t[None, :] < lens[:, None]
    token = (starts[:, None] + t[None, :]).clamp(max=num_tokens - 1)

    # Key k of request b is a prefix slot if k < prefix[b], else new token j = k - prefix[b].
    j = torch.arange(num_keys, device=device)[None, :] - prefix[:, None]          # (B, K)
    is_new = (j >= 0) & (j < lens[:, None])
    jc = j.clamp(0, 32 * bitmask.shape[1] - 1)
    flat = token.view(-1)  # index_select: cheaper per call than advanced indexing on CPU
    words = bitmask.index_select(0, flat).view(*token.shape, -1)                     # (B, Tmax, W)
    word = words.gather(2, (jc // 32)[:, None, :].expand(-1, t_max, -1))            # (B, Tmax, K)
    bit = (word >> (jc % 32).to(torch.int32)[:, None, :]) & 1
    mask = (j < 0)[:, None, :] | (is_new[:, None, :] & bit.bool())
    # Padding queries see everything: their rows are dropped, and a fully masked row is NaN.
    mask |= ~is_real[:, :, None]
    # Un-pad: token i is position i - starts[b] of the request b whose slice holds it.
    i = torch.arange(num_tokens, device=device)
    owner = torch.searchsorted(query_starts[1:], i.to(torch.int32), right=True)
    column = i - starts[owner]
    rows = request_rows.long()
    if device.type != "cpu":  # reading lengths or rows would cost a sync: one padded call
        return PaddedPlan((PaddedGroup(flat, tuple(token.shape), mask[:, None], rows, None),),
                          num_keys, owner * t_max + column)
    num_requests = len(lens)
    with_tree = torch.nonzero(lens > 1).flatten()
    if t_max == 1 or len(with_tree) > num_requests // 2:
        return PaddedPlan((PaddedGroup(flat, tuple(token.shape), mask[:, None], rows, _consecutive(rows)),),
                          num_keys, owner * t_max + column)
    roots = PaddedGroup(token[:, 0].contiguous(), (num_requests, 1), mask[:, None, :1], rows, _consecutive(rows))
    trees = PaddedGroup(token[with_tree, 1:].reshape(-1), (len(with_tree), t_max - 1), mask[with_tree, None, 1:],
                        rows[with_tree], _consecutive(rows[with_tree]))
    place = torch.full((num_requests,), -1, dtype=torch.long)
    place[with_tree] = torch.arange(len(with_tree))
    unpad = torch.where(column == 0, owner, num_requests + place[owner] * (t_max - 1) + column - 1)
    return PaddedPlan((roots, trees), num_keys, unpad)


def attend_padded(plan: PaddedPlan | None, q, k_cache, v_cache, scale: float | None = None) -> torch.Tensor:
    """The reference's attention over a prepared plan: one SDPA call per group."""
    if plan is None:
        return q.new_empty(q.shape)
    outs = []
    for g in plan.groups:
        if g.first_row is not None:  # the executor's rows: consecutive, so a view suffices
            rows = slice(g.first_row, g.first_row + g.shape[0])
            keys, values = k_cache[rows, :, :plan.num_keys], v_cache[rows, :, :plan.num_keys]
        else:
            keys = k_cache[:, :, :plan.num_keys].index_select(0, g.rows)            # (Bg, Hk, K, D)
            values = v_cache[:, :, :plan.num_keys].index_select(0, g.rows)
        queries = q.index_select(0, g.token).view(*g.shape, *q.shape[1:]).transpose(1, 2)  # (Bg, Hq, Tg, D)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=g.mask,
                                             scale=scale, enable_gqa=q.shape[1] != keys.shape[1])
        outs.append(out.transpose(1, 2).reshape(-1, *q.shape[1:]))
    flat = outs[0] if len(outs) == 1 else torch.cat(outs)
    return flat.index_select(0, plan.unpad)                                          # (T, Hq, D)


def tree_attention_reference(q, k_cache, v_cache, query_starts, prefix_lens, request_rows, bitmask,
                             scale: float | None = None, max_len: int | None = None,
                             num_keys: int | None = None) -> torch.Tensor:
    """(T, Hq, D) attention outputs, in q's dtype; see the module docstring for the layout.

    ``max_len`` (the longest slice) and ``num_keys`` (the largest prefix + slice length) let
    a caller that knows them skip the device-to-host syncs that would compute them. A forward
    over many layers builds the plan once instead (``padded_plan``, then ``attend_padded``).
    """
    check_inputs(q, k_cache, v_cache, query_starts, prefix_lens, request_rows, bitmask)
    plan = padded_plan(query_starts, prefix_lens, request_rows, bitmask, q.shape[0], max_len, num_keys,
                       k_cache.shape[2])
    return attend_padded(plan, q, k_cache, v_cache, scale)


def tree_attention_cupy(q, k_cache, v_cache, query_starts, prefix_lens, request_rows, bitmask,
                        scale: float | None = None, max_len: int | None = None,
                        num_keys: int | None = None) -> torch.Tensor:
    """The CUDA kernel; same arguments and result as ``tree_attention_reference``.

    One thread block per (query tile, kv head, request): grid (ceil(max_len / qtile), Hk, B),
    blocks past their request's slice exit at once, so the launch needs no host round trip
    when ``max_len`` is given. ``num_keys`` is accepted for symmetry and not needed.
    """
    del num_keys  # each block reads its own request's prefix length on device
    check_inputs(q, k_cache, v_cache, query_starts, prefix_lens, request_rows, bitmask,
                 for_kernel=True)
    reason = _cupy.unavailable(q.device)
    if reason is not None:
        raise RuntimeError(f"tree_attention_cupy cannot run: {reason}")
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[1]
    num_requests = prefix_lens.shape[0]
    _, t_max = _slice_lengths(query_starts, max_len)
    q = q.contiguous()
    out = torch.empty_like(q)
    if num_tokens == 0 or t_max == 0:
        return out
    group = num_q_heads // num_kv_heads
    # A block holds up to ROWS (query, q-head) rows: qtile queries times the whole head group,
    # so each K/V tile staged in shared memory serves every query and q-head of the block.
    qtile = max(1, KERNEL_ROWS[q.dtype] // group)
    grid = (math.ceil(t_max / qtile), num_kv_heads, num_requests)
    scale = head_dim ** -0.5 if scale is None else scale
    fn = _cupy.kernel("tree_attention", f"tree_attn_{KERNEL_DTYPES[q.dtype]}_d{head_dim}")
    strides = [np.int64(c.stride(i)) for c in (k_cache, v_cache) for i in range(3)]
    # The kernel takes fp16/bf16 as raw 16-bit words (CuPy has no bfloat16 dtype): same memory.
    raw = (lambda t: t) if q.dtype == torch.float32 else (lambda t: t.view(torch.int16))  # noqa: E731
    args = (raw(q), raw(k_cache), raw(v_cache), raw(out), query_starts.contiguous(), prefix_lens.contiguous(),
            request_rows.contiguous(), bitmask.contiguous(), np.int32(bitmask.shape[1]),
            np.int32(num_q_heads), np.int32(num_kv_heads), np.int32(qtile), *strides,
            np.float32(scale * LOG2E))
    _cupy.launch(fn, grid, (KERNEL_THREADS, 1, 1), args)
    return out
