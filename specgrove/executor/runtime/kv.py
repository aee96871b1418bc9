"""A static KV cache: one tensor per K and V for all layers, rows = batch slots.

Layout ``(layers, rows, kv_heads, max_len, head_dim)``. A token's K/V lives at a *slot* (its
index on the length axis) that need not equal its position: tree nodes are written after the
prefix in whatever order they are computed, and ``move`` later compacts the accepted ones onto
the slots right after the prefix, for all layers in one gather/scatter.
"""

from __future__ import annotations

from collections import Counter

import torch

from specgrove.kernels.backend import TORCH, Kernels


class KVCache:
    def __init__(self, num_layers: int, max_batch: int, num_kv_heads: int, max_len: int,
                 head_dim: int, dtype: torch.dtype, device: torch.device, kernels: Kernels = TORCH) -> None:
        shape = (num_layers, max_batch, num_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_batch, self.max_len = max_batch, max_len
        self.kernels = kernels

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor,
              first_row: int = 0) -> None:
        """k, v: (B, H, T, D) for rows first_row..first_row+B-1; slots: (B, T) per token."""
        rows = torch.arange(first_row, first_row + slots.shape[0], device=slots.device)[:, None]
        # Advanced indices on dims 0 and 2 put (B, T) first: the value is (B, T, H, D).
        self.k[layer][rows, :, slots] = k.transpose(1, 2)
        self.v[layer][rows, :, slots] = v.transpose(1, 2)

    def write_tokens(self, layer: int, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor,
                     slots: torch.Tensor) -> None:
        """k, v: (T, H, D) for T tokens of any rows; token t goes to (rows[t], slots[t])."""
        self.k[layer][rows, :, slots] = k
        self.v[layer][rows, :, slots] = v

    def view(self, layer: int, first_row: int, num_rows: int, num_keys: int):
        rows = slice(first_row, first_row + num_rows)
        return self.k[layer, rows, :, :num_keys], self.v[layer, rows, :, :num_keys]

    def move(self, rows: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
             max_moves_per_row: int | None = None) -> None:
        """For each i, copy slot ``src[i]`` of row ``rows[i]`` to slot ``dst[i]``, all layers,
        K and V (one kernel launch on CUDA). Every source is read before any destination is
        written, so overlapping moves are safe."""
        if rows.numel() == 0:
            return
        self.kernels.compact(self.k, self.v, rows, src, dst, max_moves_per_row=max_moves_per_row)

    def apply(self, moves: list[tuple[int, int, int]]) -> None:
        """``move`` for a host-side list of (row, src, dst) triples (one host-to-device copy)."""
        if moves:
            table = torch.tensor(moves, dtype=torch.int64).to(self.k.device).t()
            most = max(Counter(r for r, _, _ in moves).values())
            self.move(table[0], table[1], table[2], max_moves_per_row=most)

    def copy_row(self, src: int, dst: int, length: int) -> None:
        """Move a request's cache to another row (used to keep active rows contiguous)."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]
