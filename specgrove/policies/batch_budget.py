"""Batch-budget policies: split one step's node budget across the requests of a batch.

Each request arrives with the scores (cumulative draft probabilities) of its candidate nodes;
a policy returns how many nodes each request may keep. The tree policy's ``select`` then
keeps that many best nodes per request.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from specgrove.registry import register


def _check(scores: Sequence[np.ndarray], total: int) -> None:
    if total < 0:
        raise ValueError(f"batch node budget must be >= 0, got {total}")


@register("batch-budget", "uniform")
def uniform(scores: Sequence[np.ndarray], total: int) -> list[int]:
    """Equal shares of the step budget, capped by each request's candidate count.

    The remainder of the division goes to the first requests of the batch."""
    _check(scores, total)
    n = len(scores)
    if n == 0:
        return []
    share, extra = divmod(total, n)
    return [min(len(s), share + (1 if i < extra else 0)) for i, s in enumerate(scores)]


@register("batch-budget", "greedy-global")
def greedy_global(scores: Sequence[np.ndarray], total: int) -> list[int]:
    """Give each next node to the request whose best unused candidate is most probable."""
    _check(scores, total)
    ranked = [np.sort(np.asarray(s, dtype=np.float64))[::-1] for s in scores]
    budgets = [0] * len(ranked)
    # Max-heap on (score, then lower request index first): deterministic tie-breaking.
    heap = [(-r[0], i) for i, r in enumerate(ranked) if len(r)]
    heapq.heapify(heap)
    for _ in range(total):
        if not heap:
            break
        _, i = heapq.heappop(heap)
        budgets[i] += 1
        if budgets[i] < len(ranked[i]):
            heapq.heappush(heap, (-ranked[i][budgets[i]], i))
    return budgets
