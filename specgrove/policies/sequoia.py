"""``sequoia``: the optimal static tree for a node budget, by dynamic programming.

Model (Sequoia, Chen et al. 2024): a node that is the draft's rank-r proposal under its parent
is accepted, given its parent was, with probability ``acceptance[r]``. A node's chance of
being accepted is the product along its path, and the expected number of accepted tokens is
the sum of that over the tree. Children always take ranks 1..m with no gaps (the draft's
top-m tokens).

Let ``V[d][n]`` be the best value of a subtree of n nodes (its own root counted as 1) with at
most d levels, and ``C[i][m]`` the best way to spread m nodes over child subtrees of ranks
i, i+1, ...:  ``C[i][m] = max_s acceptance[i] * V[d-1][s] + C[i+1][m-s]`` (s >= 1), and
``V[d][n] = 1 + C[0][n-1]``. The speculation tree of budget N is the subtree of N + 1 nodes
below the last accepted token, so its expected emitted tokens per step is ``V[D+1][N+1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from specgrove.policies.shape import ShapePolicy
from specgrove.registry import register

NEG = -np.inf


def sequoia_table(acceptance: Sequence[float], max_nodes: int, max_depth: int):
    """DP tables: ``value[d][n]`` and, for reconstruction, ``split[d][i][m]`` (nodes given to
    rank i when spreading m nodes over ranks i.. under a node with d levels)."""
    acc = np.asarray(acceptance, dtype=np.float64)
    num_ranks = len(acc)
    value = np.full((max_depth + 1, max_nodes + 1), NEG)
    split = np.zeros((max_depth + 1, num_ranks + 1, max_nodes + 1), dtype=np.int64)
    for d in range(1, max_depth + 1):
        below = value[d - 1]
        spread = np.full((num_ranks + 1, max_nodes + 1), NEG)
        spread[:, 0] = 0.0
        for i in range(num_ranks - 1, -1, -1):
            for m in range(1, max_nodes + 1):
                s = np.arange(1, m + 1)
                # acc * -inf would be nan when acc == 0: keep impossible subtrees at -inf.
                finite = np.isfinite(below[s])
                grown = np.where(finite, acc[i] * np.where(finite, below[s], 0.0), NEG)
                cand = grown + spread[i + 1, m - s]
                best = int(np.argmax(cand))
                if cand[best] > NEG:
                    spread[i, m] = cand[best]
                    split[d, i, m] = s[best]
        value[d, 1:] = 1.0 + spread[0, : max_nodes]
    return value, split


def _build(split: np.ndarray, d: int, n: int, parent: int, parents: list[int]) -> None:
    """Append the optimal subtree of n nodes (root included) whose root is ``parent``."""
    m, i = n - 1, 0
    child_sizes = []
    while m > 0:
        s = int(split[d, i, m])
        child_sizes.append(s)
        m, i = m - s, i + 1
    first = len(parents)
    parents.extend([parent] * len(child_sizes))  # siblings consecutive, in rank order
    for offset, s in enumerate(child_sizes):
        _build(split, d - 1, s, first + offset, parents)


def sequoia_shape(acceptance: Sequence[float], budget: int, max_depth: int) -> tuple[np.ndarray, float]:
    """The optimal shape with at most ``budget`` nodes and depth, and its expected tokens per
    step (accepted nodes plus the bonus token)."""
    if budget <= 0:
        return np.empty(0, dtype=np.int64), 1.0
    value, split = sequoia_table(acceptance, budget + 1, max_depth + 1)
    # Fewer nodes can never be better (values are >= 0), but guard against a DP with too
    # few ranks to place them all.
    n = int(np.nanargmax(np.where(np.isfinite(value[max_depth + 1]), value[max_depth + 1], NEG)))
    parents: list[int] = []
    _build(split, max_depth + 1, n, -1, parents)
    return np.array(parents, dtype=np.int64), float(value[max_depth + 1, n])


@register("tree", "sequoia")
class Sequoia(ShapePolicy):
    """Sequoia: the static tree that maximises expected accepted tokens for the budget."""

    DEFAULT_ACCEPTANCE = (0.60, 0.12, 0.06, 0.04, 0.03, 0.02, 0.015, 0.01)

    def __init__(self, acceptance: Sequence[float] = DEFAULT_ACCEPTANCE, max_depth: int = 8) -> None:
        acc = [float(a) for a in acceptance]
        if not acc or min(acc) < 0 or max(acc) > 1:
            raise ValueError(f"sequoia acceptance must be probabilities in [0, 1], got {acc}")
        if max_depth < 1:
            raise ValueError(f"sequoia max_depth must be >= 1, got {max_depth}")
        self.acceptance = tuple(acc)
        self.max_depth = max_depth
        self._shape_for = lru_cache(maxsize=64)(self._compute_shape)

    def _compute_shape(self, budget: int) -> np.ndarray:
        return sequoia_shape(self.acceptance, budget, self.max_depth)[0]

    def grow(self, budget: int):
        self.shape = self._shape_for(int(budget))
        return super().grow(budget)
