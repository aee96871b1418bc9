"""Packing several requests' trees into one verification input.

Each request contributes its root (the last accepted token, whose KV is not cached yet)
followed by its tree nodes. The layout is flat and ragged, the way paged/varlen attention
kernels see a batch:

* queries: ``tokens`` of length T, request r's slice is ``query_starts[r]:query_starts[r+1]``;
* keys: every request's cached prefix, back to back (request r's slice is
  ``key_starts[r]:key_starts[r] + prefix_lens[r]``), then the T new tokens themselves;
* ``mask[q, k]`` is true when query q may attend to key k: its own request's prefix, and the
  new tokens that are its own ancestors (the root included) or itself. Nothing else.

The target worker builds every verification forward from a ``PackedBatch``: it reads the
ragged tokens, positions and per-request ``tree_masks`` and lays them into its cache rows.
The dense ``mask`` over all keys is the reference definition (tests, and kernels that want
it); it is built on first use only, since the hot path never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from specgrove.tree import Tree, ancestor_mask, depths


@dataclass(frozen=True, eq=False)
class PackedBatch:
    tokens: np.ndarray  # (T,) root then nodes, request after request
    positions: np.ndarray  # (T,) absolute positions: prefix_len + depth (root depth 0)
    request_index: np.ndarray  # (T,) which request each query token belongs to
    query_starts: np.ndarray  # (B+1,) offsets of each request's slice in ``tokens``
    prefix_lens: np.ndarray  # (B,) cached tokens per request
    key_starts: np.ndarray  # (B,) where each request's prefix starts on the key axis
    tree_masks: tuple[np.ndarray, ...]  # per request, ``tree_mask`` of its tree: (n+1, n+1)

    @property
    def num_requests(self) -> int:
        return len(self.prefix_lens)

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @cached_property
    def mask(self) -> np.ndarray:
        """(T, sum(prefix_lens) + T) boolean attention mask over [all prefixes, new tokens]."""
        num_cached = int(self.prefix_lens.sum())
        mask = np.zeros((self.num_tokens, num_cached + self.num_tokens), dtype=bool)
        for r, own in enumerate(self.tree_masks):
            q0, q1 = self.query_starts[r], self.query_starts[r + 1]
            mask[q0:q1, self.key_starts[r] : self.key_starts[r] + self.prefix_lens[r]] = True
            mask[q0:q1, num_cached + q0 : num_cached + q1] = own
        return mask


def tree_mask(tree: Tree) -> np.ndarray:
    """(n+1, n+1) mask over [root, nodes...]: each sees the root, its ancestors and itself."""
    n = len(tree)
    mask = np.zeros((n + 1, n + 1), dtype=bool)
    mask[:, 0] = True
    mask[1:, 1:] = ancestor_mask(tree.parents)
    return mask


def pack_trees(
    trees: Sequence[Tree], root_tokens: Sequence[int], prefix_lens: Sequence[int]
) -> PackedBatch:
    if not (len(trees) == len(root_tokens) == len(prefix_lens)):
        raise ValueError("trees, root_tokens and prefix_lens must have one entry per request")
    prefix = np.asarray(prefix_lens, dtype=np.int64)
    if np.any(prefix < 0):
        raise ValueError(f"request {int(np.argmax(prefix < 0))}: negative prefix length")
    sizes = np.array([len(t) + 1 for t in trees], dtype=np.int64)
    query_starts = np.concatenate([[0], np.cumsum(sizes)])
    key_starts = np.concatenate([[0], np.cumsum(prefix)[:-1]]) if len(prefix) else prefix
    num_tokens = int(query_starts[-1])

    tokens = np.empty(num_tokens, dtype=np.int64)
    positions = np.empty(num_tokens, dtype=np.int64)
    request_index = np.repeat(np.arange(len(trees)), sizes)
    for r, (tree, root) in enumerate(zip(trees, root_tokens)):
        q0, q1 = query_starts[r], query_starts[r + 1]
        tokens[q0] = root
        tokens[q0 + 1 : q1] = tree.tokens
        positions[q0] = prefix[r]
        positions[q0 + 1 : q1] = prefix[r] + depths(tree.parents)
    masks = tuple(tree_mask(t) for t in trees)
    return PackedBatch(tokens, positions, request_index, query_starts, prefix, key_starts, masks)
