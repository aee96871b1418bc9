"""Token trees: a value type and the pure functions derived from its parents array.

Conventions. The *root* is the last accepted token of a request; it is not a node. Node ``i``
has parent ``parents[i]`` (``-1`` for a child of the root) and parents come before children,
so any prefix of the node list is itself a tree. ``probs[i]`` is the draft's probability of
``tokens[i]`` given the path to its parent; the product along the path (``cum_probs``) is the
draft's probability of the whole path, the score that dynamic trees rank nodes by.

Depth counts from the root: a child of the root has depth 1, which is also its position
offset from the root in the verification input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _as_array(values, dtype) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Tree:
    """A token tree hanging below the root (the last accepted token)."""

    parents: np.ndarray
    tokens: np.ndarray
    probs: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        parents = _as_array(self.parents, np.int64)
        tokens = _as_array(self.tokens, np.int64)
        probs = np.ones(len(parents)) if self.probs is None else self.probs
        probs = _as_array(probs, np.float64)
        if not (len(parents) == len(tokens) == len(probs)):
            raise ValueError(
                f"parents, tokens and probs differ in length: "
                f"{len(parents)}, {len(tokens)}, {len(probs)}"
            )
        seen: set[tuple[int, int]] = set()
        for i, (p, t) in enumerate(zip(parents.tolist(), tokens.tolist())):
            if not -1 <= p < i:
                raise ValueError(f"node {i}: parent {p} must be -1 or an earlier node (0..{i - 1})")
            if (p, t) in seen:
                raise ValueError(f"node {i}: duplicate sibling token {t} under parent {p}")
            seen.add((p, t))
        if len(probs) and (probs.min() < 0 or probs.max() > 1 or np.isnan(probs).any()):
            bad = int(np.flatnonzero(~((probs >= 0) & (probs <= 1)))[0])
            raise ValueError(f"node {bad}: draft probability {probs[bad]} is not in [0, 1]")
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "probs", probs)

    @classmethod
    def empty(cls) -> Tree:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    def __len__(self) -> int:
        return len(self.parents)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tree):
            return NotImplemented
        return (
            np.array_equal(self.parents, other.parents)
            and np.array_equal(self.tokens, other.tokens)
            and np.allclose(self.probs, other.probs)
        )

    def __repr__(self) -> str:
        return f"Tree(parents={self.parents.tolist()}, tokens={self.tokens.tolist()})"

    @property
    def depth(self) -> int:
        """The deepest node's depth; 0 for the empty tree."""
        return int(depths(self.parents).max()) if len(self) else 0

    @property
    def cum_probs(self) -> np.ndarray:
        return cum_probs(self.parents, self.probs)

    def subtree(self, keep: np.ndarray) -> Tree:
        """The nodes where ``keep`` is true, reindexed; every kept node's parent must be kept."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        kept = np.flatnonzero(keep)
        parents = self.parents[kept]
        if np.any((parents >= 0) & ~keep[np.maximum(parents, 0)]):
            raise ValueError("subtree would drop the parent of a kept node")
        new_parents = np.where(parents >= 0, new_index[np.maximum(parents, 0)], -1)
        return Tree(new_parents, self.tokens[kept], self.probs[kept])


def depths(parents: np.ndarray) -> np.ndarray:
    """Depth of every node (a child of the root has depth 1)."""
    out = np.zeros(len(parents), dtype=np.int64)
    for i, p in enumerate(np.asarray(parents).tolist()):
        out[i] = 1 if p < 0 else out[p] + 1
    return out


def cum_probs(parents: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Product of draft probabilities along the path from the root to each node."""
    out = np.empty(len(parents))
    for i, p in enumerate(np.asarray(parents).tolist()):
        out[i] = probs[i] if p < 0 else out[p] * probs[i]
    return out


def ancestor_mask(parents: np.ndarray) -> np.ndarray:
    """``mask[i, j]`` is true when node j is node i or one of its ancestors."""
    n = len(parents)
    mask = np.zeros((n, n), dtype=bool)
    for i, p in enumerate(np.asarray(parents).tolist()):
        if p >= 0:
            mask[i] = mask[p]
        mask[i, i] = True
    return mask


def path_to(parents: np.ndarray, node: int) -> list[int]:
    """Nodes from depth 1 down to ``node`` inclusive; empty for the root (-1)."""
    path = []
    while node >= 0:
        path.append(node)
        node = int(parents[node])
    return path[::-1]


def children(parents: np.ndarray) -> list[list[int]]:
    """Children of each node, plus a last entry for the root's children."""
    out: list[list[int]] = [[] for _ in range(len(parents) + 1)]
    for i, p in enumerate(np.asarray(parents).tolist()):
        out[p].append(i)  # p == -1 lands in the root's slot, the last one
    return out


def leaves(parents: np.ndarray) -> list[int]:
    has_child = np.zeros(len(parents), dtype=bool)
    has_child[np.asarray(parents)[np.asarray(parents) >= 0]] = True
    return np.flatnonzero(~has_child).tolist()


def root_to_leaf_paths(parents: np.ndarray) -> list[list[int]]:
    return [path_to(parents, leaf) for leaf in leaves(parents)]


def top_by_score(parents: np.ndarray, scores: np.ndarray, budget: int) -> np.ndarray:
    """Keep-mask of the ``budget`` best nodes, closed under ancestors.

    Scores must not increase from parent to child (cumulative probabilities never do). Ties
    go to the shallower node, then the earlier one, so a parent always ranks before its child
    and the kept set is a tree.
    """
    n = len(parents)
    keep = np.zeros(n, dtype=bool)
    if budget <= 0 or n == 0:
        return keep
    order = np.lexsort((np.arange(n), depths(parents), -np.asarray(scores)))
    keep[order[:budget]] = True
    return keep


def select_top(tree: Tree, budget: int) -> Tree:
    """The sub-tree of the ``budget`` nodes with the highest cumulative draft probability."""
    if budget >= len(tree):
        return tree
    return tree.subtree(top_by_score(tree.parents, tree.cum_probs, budget))
