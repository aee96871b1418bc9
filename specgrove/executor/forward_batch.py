"""Build one padded forward over cache rows 0..B-1 from per-row pieces.

Every row of the batch brings its new tokens, their positions and cache slots, the length of
its visible prefix, and for each token the extra slots it may see (its tree ancestors). Rows
with fewer tokens are padded; a padding token writes to a slot no real query can see (just
past the row's last real slot) and attends only to itself, so it can never disturb a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class _Row:
    prefix_len: int = 0
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    visible: list[Sequence[int]] = field(default_factory=list)
    free_slot: int = 0


class ForwardBatch:
    def __init__(self, free_slots: Sequence[int], first_row: int = 0) -> None:
        """One entry per cache row first_row, first_row+1, ...: ``free_slots[i]`` is a slot of
        that row which holds nothing anyone will read (a padding token may scribble there)."""
        self.rows = [_Row(free_slot=int(s)) for s in free_slots]
        self.first_row = first_row

    def add(self, row: int, prefix_len: int, tokens: Sequence[int], positions: Sequence[int],
            slots: Sequence[int], visible: Sequence[Sequence[int]]) -> None:
        """Queue tokens for cache row ``row``; token j sees slots [0, prefix_len), ``visible[j]``
        and its own slot. Tokens take columns in the order they are added."""
        r = self.rows[row - self.first_row]
        r.prefix_len = prefix_len
        r.tokens += list(tokens)
        r.positions += list(positions)
        r.slots += list(slots)
        r.visible += list(visible)
        r.free_slot = max(r.free_slot, max(slots, default=-1) + 1)

    def num_queued(self, row: int) -> int:
        return len(self.rows[row - self.first_row].tokens)

    @property
    def num_tokens(self) -> int:
        """The longest row's queued tokens (at least 1): the padded batch's width."""
        return max(1, max(len(r.tokens) for r in self.rows))

    @property
    def num_keys(self) -> int:
        """Cache slots the padded batch attends over: up to every row's free slot."""
        return max(r.free_slot for r in self.rows) + 1

    def arrays(self, window: tuple[int, int] | None = None, num_tokens: int | None = None,
               num_keys: int | None = None, pad_slot: int | None = None):
        """Host arrays tokens, positions, slots (B, T) int64 and mask (B, T, K) bool.

        By default B is this batch's rows, T its widest row and K its keys. ``window`` = (first
        cache row, number of rows) may be wider, as ``num_tokens`` and ``num_keys`` may be
        larger (the fixed shapes of a CUDA graph, ``runtime.graphs``): a window row outside
        this batch is all padding, writing to ``pad_slot`` (a slot nobody reads) and seeing only
        it; a key past the batch's own is seen by no real query."""
        first, num_rows = window if window is not None else (self.first_row, len(self.rows))
        T = self.num_tokens if num_tokens is None else num_tokens
        K = self.num_keys if num_keys is None else num_keys
        tokens = np.zeros((num_rows, T), dtype=np.int64)
        positions = np.zeros((num_rows, T), dtype=np.int64)
        slots = np.empty((num_rows, T), dtype=np.int64)
        mask = np.zeros((num_rows, T, K), dtype=bool)
        for b in range(num_rows):
            i = first + b - self.first_row
            if not 0 <= i < len(self.rows):
                slots[b], mask[b, :, pad_slot] = pad_slot, True
                continue
            r = self.rows[i]
            n = len(r.tokens)
            tokens[b, :n], positions[b, :n], slots[b, :n] = r.tokens, r.positions, r.slots
            slots[b, n:] = r.free_slot
            mask[b, :n, : r.prefix_len] = True
            for j, (own, extra) in enumerate(zip(r.slots, r.visible)):
                mask[b, j, own] = True
                if len(extra):
                    mask[b, j, np.asarray(extra, dtype=np.int64)] = True
            mask[b, n:, r.free_slot] = True
        return tokens, positions, slots, mask

    def build(self, device: torch.device, select: Sequence[tuple[int, int]] | None = None):
        """Keyword arguments for ``LeanModel.forward``; ``select`` lists the (cache row,
        column) of the tokens whose logits are wanted, in the order they are returned."""
        tokens, positions, slots, mask = self.arrays()
        as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        kwargs = dict(tokens=as_t(tokens), positions=as_t(positions), slots=as_t(slots),
                      mask=as_t(mask), num_keys=self.num_keys, first_row=self.first_row)
        if select is not None:
            pairs = np.asarray(select, dtype=np.int64).reshape(-1, 2)
            kwargs["select"] = (as_t(pairs[:, 0] - self.first_row), as_t(pairs[:, 1].copy()))
        return kwargs


def prompt_batch(seqs) -> ForwardBatch:
    """A causal prefill of new requests' prompts (``RequestState``s holding consecutive rows)."""
    first = min(s.row for s in seqs)
    batch = ForwardBatch([len(s.prompt) for s in sorted(seqs, key=lambda s: s.row)], first_row=first)
    for s in seqs:
        n = len(s.prompt)
        batch.add(s.row, 0, s.prompt, range(n), range(n), [range(j) for j in range(n)])
    return batch
