"""Tree layout of a packed verification batch: positions, KV slots, cache rows and the
bit-packed tree-attention mask, computed on the device from the ragged parents array.

Inputs (int32, 1-D, one device) follow ``specgrove.packing``: request r's query tokens are
``parents[query_starts[r]:query_starts[r+1]]``; local index 0 is the root (the last accepted
token, parent -1) and local token i > 0 has its parent at a local index in ``[0, i)``.

The mask is bit-packed as in SpecInfer: ``bitmask[q, j // 32]`` bit ``j % 32`` (bit 0 the least
significant) is set when local token j of q's own slice is q or one of its ancestors. Keys of
the cached prefix are not in it: every query sees its whole prefix.

``tree_layout_reference`` (torch, any device) and ``tree_layout_cupy`` (one CUDA kernel) take
the same arguments and return equal ``TreeLayout`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specgrove.kernels import _cupy

_THREADS = 256


@dataclass(frozen=True, eq=False)
class TreeLayout:
    positions: torch.Tensor  # (T,) int64: prefix_len + depth (the root has depth 0)
    slots: torch.Tensor  # (T,) int64: prefix_len + local index, where the token's K/V goes
    rows: torch.Tensor  # (T,) int64: the cache row of each token's request
    bitmask: torch.Tensor  # (T, W) int32: ancestor-or-self bits over the token's own slice
    query_starts: torch.Tensor  # (B+1,) int32, as given
    prefix_lens: torch.Tensor  # (B,) int32, as given
    request_rows: torch.Tensor  # (B,) int32, the cache row of each request, as given
    max_len: int  # the longest slice (W = ceil(max_len / 32), at least 1)

    @property
    def num_words(self) -> int:
        return self.bitmask.shape[1]


def num_words(max_len: int) -> int:
    """Mask words per token: one bit per token of the longest slice, at least one word."""
    return max(1, -(-max_len // 32))


def check_inputs(parents, query_starts, prefix_lens, rows, max_len=None) -> None:
    """Checks that need no device sync (dtypes, ranks, lengths, devices); ValueError if not."""
    named = {"parents": parents, "query_starts": query_starts, "prefix_lens": prefix_lens,
             "rows": rows}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.dtype != torch.int32:
            raise ValueError(f"{name} must be int32, got {t.dtype}")
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
        if t.device != parents.device:
            raise ValueError(f"{name} is on {t.device} but parents is on {parents.device}")
    num_requests = prefix_lens.numel()
    if rows.numel() != num_requests:
        raise ValueError(f"rows has {rows.numel()} entries but prefix_lens has {num_requests}")
    if query_starts.numel() != num_requests + 1:
        raise ValueError(f"query_starts must have B+1 = {num_requests + 1} entries, "
                         f"got {query_starts.numel()}")
    if num_requests == 0 and parents.numel():
        raise ValueError(f"parents has {parents.numel()} tokens but there are no requests")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int)
                                or max_len < 0):
        raise ValueError(f"max_len must be None or an int >= 0, got {max_len!r}")


def check_structure(parents, query_starts, prefix_lens, rows, max_len=None) -> None:
    """The checks that read values (host syncs): for the reference and for debugging."""
    starts = query_starts.long().cpu()
    num_tokens = parents.numel()
    if starts[0] != 0 or starts[-1] != num_tokens:
        raise ValueError(f"query_starts must run from 0 to T = {num_tokens}, "
                         f"got {starts[0].item()} .. {starts[-1].item()}")
    lengths = starts[1:] - starts[:-1]
    if (lengths < 1).any():
        r = int(torch.nonzero(lengths < 1)[0])
        raise ValueError(f"request {r}: empty slice (every request has at least its root)")
    for name, t in (("prefix_lens", prefix_lens), ("rows", rows)):
        if (t < 0).any():
            raise ValueError(f"request {int(torch.nonzero(t < 0)[0])}: negative {name}")
    if max_len is not None and lengths.numel() and max_len < int(lengths.max()):
        raise ValueError(f"max_len {max_len} is below the longest slice ({int(lengths.max())})")
    p = parents.long().cpu()
    local = torch.arange(num_tokens) - torch.repeat_interleave(starts[:-1], lengths)
    is_root = local == 0
    bad = torch.where(is_root, p != -1, (p < 0) | (p >= local))
    if bad.any():
        t = int(torch.nonzero(bad)[0])
        rule = "-1 (a root)" if is_root[t] else f"in [0, {int(local[t])})"
        raise ValueError(f"token {t}: parent {int(p[t])} must be {rule}")


def _max_len(query_starts: torch.Tensor) -> int:
    if query_starts.numel() < 2:
        return 0
    return int((query_starts[1:] - query_starts[:-1]).max().item())  # the one host sync


def tree_layout_reference(parents, query_starts, prefix_lens, rows, max_len=None, *,
                          check=True) -> TreeLayout:
    """Torch ops, vectorised over tokens, log2(max_len) rounds of pointer jumping. ``check``
    validates the structure first (host syncs); the executor passes ``max_len`` since it
    knows it on host, which spares the one sync of an unchecked call."""
    check_inputs(parents, query_starts, prefix_lens, rows, max_len)
    if check:
        check_structure(parents, query_starts, prefix_lens, rows, max_len)
    if max_len is None:
        max_len = _max_len(query_starts)
    device, num_tokens = parents.device, parents.numel()
    if max_len == 1:
        # Every slice is a lone root (a plain decoding step): depth 0, its own slot right after
        # the prefix, its own bit. The same tensors as below, without the pointer jumping.
        prefix = prefix_lens.long()
        bitmask = torch.ones(num_tokens, 1, dtype=torch.int32, device=device)
        return TreeLayout(prefix, prefix, rows.long(), bitmask, query_starts, prefix_lens, rows, max_len)
    lengths = (query_starts[1:] - query_starts[:-1]).long()
    request = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths,
                                      output_size=num_tokens)
    start = query_starts.long()[request]
    local = torch.arange(num_tokens, device=device) - start
    parent = parents.long()
    is_child = parent >= 0
    # Pointer jumping: ``jump[t]`` is t's 2^k-th ancestor (the root points at itself) and
    # ``words[t]`` holds t and its ancestors up to 2^k - 1 edges up; a round doubles both, so
    # ceil(log2(max_len)) rounds reach every root (no token is deeper than max_len - 1).
    # A root's self-loop is harmless: OR is idempotent and the root adds no depth.
    jump = torch.where(is_child, start + parent, torch.arange(num_tokens, device=device))
    depth = is_child.long()  # edges from t to jump[t]
    words = torch.zeros(num_tokens, num_words(max_len), dtype=torch.int64, device=device)
    words.scatter_(1, (local // 32)[:, None],
                   torch.bitwise_left_shift(torch.ones_like(local), local % 32)[:, None])
    for _ in range(max(max_len - 1, 0).bit_length()):
        words |= words[jump]
        depth += depth[jump]
        jump = jump[jump]
    # Words hold 32 bits in int64; wrap bit 31 into int32's sign as the kernel's stores do.
    bitmask = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    prefix = prefix_lens.long()[request]
    return TreeLayout(prefix + depth, prefix + local, rows.long()[request], bitmask,
                      query_starts, prefix_lens, rows, max_len)


def tree_layout_cupy(parents, query_starts, prefix_lens, rows, max_len=None, *,
                     check=False) -> TreeLayout:
    """One CUDA kernel, no host round trip when the caller passes ``max_len`` (the executor
    knows its tree sizes on host); without it, one ``.item()`` finds it. ``check`` runs the
    reference's structural checks first (they sync: for debugging). A ``max_len`` below the
    true one drops mask bits rather than writing out of bounds."""
    check_inputs(parents, query_starts, prefix_lens, rows, max_len)
    if check:
        check_structure(parents, query_starts, prefix_lens, rows, max_len)
    reason = _cupy.unavailable(parents.device)
    if reason is not None:
        raise RuntimeError(f"tree_layout_cupy cannot run: {reason}")
    if max_len is None:
        max_len = _max_len(query_starts)
    import numpy as np

    device, num_tokens, width = parents.device, parents.numel(), num_words(max_len)
    positions = torch.empty(num_tokens, dtype=torch.int64, device=device)
    slots = torch.empty_like(positions)
    token_rows = torch.empty_like(positions)
    bitmask = torch.empty(num_tokens, width, dtype=torch.int32, device=device)
    if num_tokens:
        args = (parents.contiguous(), query_starts.contiguous(), prefix_lens.contiguous(),
                rows.contiguous(), np.int32(prefix_lens.numel()), np.int32(num_tokens),
                np.int32(width), positions, slots, token_rows, bitmask)
        blocks = (num_tokens + _THREADS - 1) // _THREADS
        _cupy.launch(_cupy.kernel("tree_layout", "tree_layout"), (blocks,), (_THREADS,), args)
    return TreeLayout(positions, slots, token_rows, bitmask, query_starts, prefix_lens, rows,
                      max_len)
