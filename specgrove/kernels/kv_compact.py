"""KV compaction: move accepted tokens' K/V onto the slots right after the prefix, in place.

The cache (``executor/runtime/kv.py``) is one K and one V tensor of shape
``(layers, rows, kv_heads, max_len, head_dim)``, contiguous, float32/float16/bfloat16. A
compaction is a list of moves ``(rows[i], src[i], dst[i])``: slot ``src[i]`` of cache row
``rows[i]`` is copied to slot ``dst[i]`` for every layer and head, in K and in V. All sources
are read before any destination is written (gather-before-scatter), so a destination may be
another move's source; destinations are distinct within a row.

``compact_reference`` is the torch code (any device, the CPU path); ``compact_cupy`` does the
same in one CUDA launch per cache, without a host round trip when the caller passes
``max_moves_per_row`` (the executor knows it: at most the tree budget + 1).

Shared memory: a CUDA block stages all source vectors of one row, for one (layer, head,
K-or-V), before writing any of them, so ``max_moves_per_row * head_dim * element size`` must
fit the 48 KiB every CUDA device grants a block without opt-in (fp16, head_dim 128: 192 moves
per row). Past that ``compact_cupy`` raises ValueError rather than compacting in chunks: a
chunked copy would need a second buffer to stay gather-before-scatter, and the torch reference
does exactly that job already.
"""

from __future__ import annotations

import torch

from specgrove.kernels import _cupy

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)
SHARED_BYTES = 48 * 1024  # dynamic shared memory per block without cudaFuncSetAttribute opt-in
_THREADS = 256


def check_inputs(k, v, rows, src, dst, max_moves_per_row=None) -> None:
    """Checks that need no device sync (shapes, dtypes, devices); ValueError if not."""
    for name, t in (("k", k), ("v", v), ("rows", rows), ("src", src), ("dst", dst)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if k.dim() != 5:
        raise ValueError(f"k must be (layers, rows, kv_heads, max_len, head_dim), "
                         f"got shape {tuple(k.shape)}")
    if k.dtype not in DTYPES:
        raise ValueError(f"cache dtype must be float32, float16 or bfloat16, got {k.dtype}")
    if v.shape != k.shape or v.dtype != k.dtype or v.device != k.device:
        raise ValueError(f"v ({tuple(v.shape)}, {v.dtype}, {v.device}) must match k "
                         f"({tuple(k.shape)}, {k.dtype}, {k.device})")
    if not (k.is_contiguous() and v.is_contiguous()):
        raise ValueError("k and v must be contiguous")
    for name, t in (("rows", rows), ("src", src), ("dst", dst)):
        if t.dtype not in INDEX_DTYPES:
            raise ValueError(f"{name} must be int32 or int64, got {t.dtype}")
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
        if t.device != k.device:
            raise ValueError(f"{name} is on {t.device} but the cache is on {k.device}")
    if not (rows.numel() == src.numel() == dst.numel()):
        raise ValueError(f"rows, src and dst differ in length: "
                         f"{rows.numel()}, {src.numel()}, {dst.numel()}")
    if max_moves_per_row is not None and (isinstance(max_moves_per_row, bool)
                                          or not isinstance(max_moves_per_row, int)
                                          or max_moves_per_row < 0):
        raise ValueError(f"max_moves_per_row must be None or an int >= 0, "
                         f"got {max_moves_per_row!r}")


def check_structure(k, v, rows, src, dst, max_moves_per_row=None) -> None:
    """The checks that read values (host syncs): for the reference and for debugging."""
    _, num_rows, _, max_len, _ = k.shape
    r, s, d = rows.long().cpu(), src.long().cpu(), dst.long().cpu()
    for name, t, bound in (("rows", r, num_rows), ("src", s, max_len), ("dst", d, max_len)):
        bad = (t < 0) | (t >= bound)
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            raise ValueError(f"move {i}: {name} {int(t[i])} is outside [0, {bound})")
    if r.numel() and torch.unique(r * max_len + d).numel() != r.numel():
        raise ValueError("two moves write the same (row, dst) slot")
    if max_moves_per_row is not None and r.numel():
        worst = int(torch.bincount(r).max())
        if worst > max_moves_per_row:
            raise ValueError(f"a row has {worst} moves, above max_moves_per_row "
                             f"{max_moves_per_row}")


def compact_reference(k, v, rows, src, dst, max_moves_per_row=None, *, check=True) -> None:
    """In place, torch advanced indexing: the right-hand side is a gathered copy, so it is read
    whole before the scatter writes. ``max_moves_per_row`` only feeds ``check``."""
    check_inputs(k, v, rows, src, dst, max_moves_per_row)
    if check:
        check_structure(k, v, rows, src, dst, max_moves_per_row)
    if rows.numel() == 0:
        return
    r, s, d = rows.long(), src.long(), dst.long()
    # Advanced indices on dims 1 and 3 (not adjacent) put the moves first: (n, L, H, D).
    k[:, r, :, d] = k[:, r, :, s]
    v[:, r, :, d] = v[:, r, :, s]


def _words(cache: torch.Tensor) -> torch.Tensor:
    """The cache as raw words: 32-bit when a slot vector splits into them, else 16-bit."""
    if cache.element_size() == 4 or cache.shape[-1] % 2 == 0:
        return cache.view(torch.int32)
    return cache.view(torch.int16)


def group_moves(rows: torch.Tensor, num_rows: int):
    """The moves grouped by cache row, on device with no host sync: ``order`` sorts them by row
    (stably), row r's moves are ``order[row_starts[r]:row_starts[r+1]]``, and ``group_rows``
    lists the rows that have moves first, in row order, padded with empty rows to
    min(moves, num_rows) entries: a bound known on host, unlike the true count. Rows outside
    [0, num_rows) fall in no range."""
    sorted_rows, order = torch.sort(rows.long(), stable=True)
    row_starts = torch.searchsorted(sorted_rows, torch.arange(num_rows + 1, device=rows.device))
    is_empty = row_starts[1:] == row_starts[:-1]
    group_rows = torch.argsort(is_empty, stable=True)[:min(rows.numel(), num_rows)]
    return order, row_starts, group_rows.contiguous()


def compact_cupy(k, v, rows, src, dst, max_moves_per_row=None, *, check=False) -> None:
    """In place, one CUDA launch for K and V, every layer and head. Without
    ``max_moves_per_row`` one ``.item()`` finds it. ``check`` runs the reference's structural
    checks first (they sync: for debugging); unchecked, out-of-range moves are skipped and a row
    with more than ``max_moves_per_row`` moves is left as it was."""
    check_inputs(k, v, rows, src, dst, max_moves_per_row)
    if check:
        check_structure(k, v, rows, src, dst, max_moves_per_row)
    reason = _cupy.unavailable(k.device)
    if reason is not None:
        raise RuntimeError(f"compact_cupy cannot run: {reason}")
    num_moves = rows.numel()
    num_layers, num_rows, num_heads, max_len, _ = k.shape
    if num_moves == 0 or k.numel() == 0:
        return
    import numpy as np

    order, row_starts, group_rows = group_moves(rows, num_rows)
    num_groups = group_rows.numel()
    if max_moves_per_row is None:
        counts = row_starts[1:] - row_starts[:-1]
        max_moves_per_row = int(counts.max().item())  # the one host sync
    if max_moves_per_row == 0:
        return

    k_words, v_words = _words(k), _words(v)
    words_per_slot, word_bytes = k_words.shape[-1], k_words.element_size()
    shared = max_moves_per_row * words_per_slot * word_bytes
    if shared > SHARED_BYTES:
        raise ValueError(f"{max_moves_per_row} moves per row of {words_per_slot * word_bytes}-byte"
                         f" slots need {shared} bytes of shared memory, above {SHARED_BYTES}; use"
                         f" compact_reference")
    blocks = num_groups * num_layers * num_heads * 2
    if blocks >= 2**31:
        raise ValueError(f"{blocks} blocks exceed the CUDA grid limit")
    fn = _cupy.kernel("kv_compact", "kv_compact_32" if word_bytes == 4 else "kv_compact_16")
    args = (k_words, v_words, group_rows, row_starts.contiguous(), order.contiguous(),
            src.long().contiguous(), dst.long().contiguous(), np.int32(num_groups),
            np.int32(num_layers), np.int32(num_rows), np.int32(num_heads), np.int32(max_len),
            np.int32(words_per_slot), np.int32(max_moves_per_row))
    _cupy.launch(fn, (blocks,), (_THREADS,), args, shared_mem=shared)
