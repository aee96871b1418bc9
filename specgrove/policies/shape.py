"""Fixed-shape trees: ``ar``, ``chain`` and ``static`` (SpecInfer's expansion configuration).

A *shape* is a parents array whose children are listed in draft-rank order: the first child
of a node takes the draft's most likely next token, the second the runner-up, and so on.
``grow_shape`` fills a shape with real tokens, one draft round per depth. Sequoia's optimal
trees are shapes too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from specgrove.policies.base import ROOT, PartialTree, TreeGrowth, TreePolicy
from specgrove.registry import register
from specgrove.tree import children


def grow_shape(shape_parents: np.ndarray) -> TreeGrowth:
    """Materialise a shape, one draft round per depth; siblings take ranks in list order."""
    kids = children(shape_parents)  # kids[-1] holds the root's children
    tree = PartialTree()
    built = {ROOT: ROOT}
    frontier = [ROOT]
    while True:
        expand = [s for s in frontier if kids[s]]
        if not expand:
            return tree.freeze()
        counts = [len(kids[s]) for s in expand]
        nodes = [built[s] for s in expand]
        topk = yield tree.expansion(nodes, max(counts))
        new_nodes = iter(tree.add_children(nodes, topk, counts))
        frontier = []
        for s in expand:
            for child in kids[s]:
                built[child] = next(new_nodes)
                frontier.append(child)


def widths_shape(widths: Sequence[int]) -> np.ndarray:
    """Shape where every node at depth d has ``widths[d]`` children (depth 0 = the root)."""
    parents: list[int] = []
    layer = [ROOT]
    for width in widths:
        next_layer = []
        for node in layer:
            for _ in range(width):
                parents.append(node)
                next_layer.append(len(parents) - 1)
        layer = next_layer
    return np.array(parents, dtype=np.int64)


class ShapePolicy(TreePolicy):
    shape: np.ndarray

    def grow(self, budget: int) -> TreeGrowth:
        return grow_shape(self.shape)


@register("tree", "ar")
class Autoregressive(ShapePolicy):
    """No speculation: an empty tree, one token per target forward."""

    drafts = False

    def __init__(self) -> None:
        self.shape = np.empty(0, dtype=np.int64)


@register("tree", "chain")
class Chain(ShapePolicy):
    """Classic speculative decoding: a chain of the draft's k most likely next tokens."""

    def __init__(self, length: int = 4) -> None:
        if length < 1:
            raise ValueError(f"chain length must be >= 1, got {length}")
        self.length = length
        self.shape = widths_shape([1] * length)


@register("tree", "static")
class Static(ShapePolicy):
    """SpecInfer-style fixed tree: per-depth branching widths, e.g. <1,1,3,1,1,1,1,1>."""

    def __init__(self, widths: Sequence[int] = (1, 1, 3, 1, 1, 1, 1, 1)) -> None:
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"static widths must be a non-empty list of positive ints, got {widths}")
        self.widths = widths
        self.shape = widths_shape(widths)
