import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import trees

from specgrove.tree import (
    Tree,
    ancestor_mask,
    children,
    cum_probs,
    depths,
    leaves,
    path_to,
    root_to_leaf_paths,
    select_top,
    top_by_score,
)


def test_golden_small_tree():
    #        root
    #       /    \
    #     0(a)   1(b)
    #     /  \      \
    #   2(c) 3(d)   4(e)
    #    |
    #   5(f)
    t = Tree([-1, -1, 0, 0, 1, 2], [10, 11, 12, 13, 14, 15], [0.5, 0.4, 0.5, 0.2, 1.0, 0.5])
    assert depths(t.parents).tolist() == [1, 1, 2, 2, 2, 3]
    assert t.depth == 3
    assert path_to(t.parents, 5) == [0, 2, 5]
    assert path_to(t.parents, -1) == []
    assert leaves(t.parents) == [3, 4, 5]
    assert root_to_leaf_paths(t.parents) == [[0, 3], [1, 4], [0, 2, 5]]
    assert children(t.parents)[-1] == [0, 1]
    np.testing.assert_allclose(t.cum_probs, [0.5, 0.4, 0.25, 0.1, 0.4, 0.125])
    mask = ancestor_mask(t.parents)
    assert mask[5].nonzero()[0].tolist() == [0, 2, 5]
    assert mask[4].nonzero()[0].tolist() == [1, 4]
    # Top 3 by cumulative probability: 0 (0.5), then 1 and 4 tie at 0.4 -> the shallower (1).
    assert select_top(t, 3) == Tree([-1, -1, 1], [10, 11, 14], [0.5, 0.4, 1.0])


@pytest.mark.parametrize(
    "parents, tokens, message",
    [
        ([-1, 1], [1, 2], "node 1: parent 1"),
        ([-1, -2], [1, 2], "node 1: parent -2"),
        ([-1, 5, 0], [1, 2, 3], "node 1: parent 5"),
        ([-1, 0, 0], [1, 7, 7], "node 2: duplicate sibling token 7"),
        ([-1, -1], [4, 4], "node 1: duplicate sibling token 4"),
    ],
)
def test_invalid_trees_name_the_node(parents, tokens, message):
    with pytest.raises(ValueError, match=message):
        Tree(parents, tokens)


def test_bad_probability_named():
    with pytest.raises(ValueError, match="node 1: draft probability 1.5"):
        Tree([-1, 0], [1, 2], [0.5, 1.5])


@given(trees())
@settings(max_examples=150, deadline=None)
def test_derived_views_agree(t):
    d = depths(t.parents)
    mask = ancestor_mask(t.parents)
    for i in range(len(t)):
        path = path_to(t.parents, i)
        assert len(path) == d[i]
        assert path[-1] == i
        assert set(np.flatnonzero(mask[i])) == set(path)
        assert np.isclose(t.cum_probs[i], np.prod(t.probs[path]))
    # Every node lies on some root-to-leaf path; leaves end exactly one path each.
    covered = {n for p in root_to_leaf_paths(t.parents) for n in p}
    assert covered == set(range(len(t)))
    kids = children(t.parents)
    assert sum(len(k) for k in kids) == len(t)


@given(trees(), st.integers(0, 30))
@settings(max_examples=150, deadline=None)
def test_select_top_is_a_closed_best_subtree(t, budget):
    keep = top_by_score(t.parents, t.cum_probs, budget)
    assert keep.sum() == min(budget, len(t))
    kept_parents = t.parents[keep]
    assert all(p < 0 or keep[p] for p in kept_parents)  # ancestors kept
    if keep.any() and (~keep).any():
        assert t.cum_probs[keep].min() >= t.cum_probs[~keep].max() - 1e-12
    sub = select_top(t, budget)
    assert len(sub) == min(budget, len(t))
    np.testing.assert_allclose(np.sort(sub.cum_probs), np.sort(t.cum_probs[keep]))


def test_tree_is_immutable():
    t = Tree([-1], [3])
    with pytest.raises(ValueError):
        t.parents[0] = 0
