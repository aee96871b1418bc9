import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specgrove import registry
from specgrove.cost import AffineCostModel
from specgrove.policies import grow_batch, grow_tree
from specgrove.policies.dynamic import expected_tokens
from specgrove.policies.sequoia import sequoia_shape
from specgrove.policies.shape import widths_shape
from specgrove.policies.synthetic import MarkovPair
from specgrove.tree import children, depths

PAIR = MarkovPair.random(vocab=32, seed=3, agreement=0.6)


def build(name, budget, root=0, **kwargs):
    policy = registry.create("tree", name, **kwargs)
    return grow_tree(policy, PAIR.drafter(root), budget)


def assert_top_k_children(tree, root):
    """Every node's children are the draft's top-m tokens after it, in rank order."""
    kids = children(tree.parents)
    for node, ks in enumerate(kids):
        if not ks:
            continue
        last = root if node == len(tree) else tree.tokens[node]
        expected = np.argsort(-PAIR.draft[last], kind="stable")[: len(ks)]
        assert sorted(tree.tokens[ks].tolist()) == sorted(expected.tolist())


def test_ar_is_empty():
    assert len(build("ar", 10)) == 0


@pytest.mark.parametrize("length", [1, 3, 7])
def test_chain(length):
    t = build("chain", 100, length=length)
    assert t.parents.tolist() == [-1] + list(range(length - 1))
    assert_top_k_children(t, 0)
    assert t.tokens[0] == int(np.argmax(PAIR.draft[0]))


def test_static_specinfer_shape():
    t = build("static", 100, widths=[1, 1, 3, 1, 1, 1, 1, 1])
    assert len(t) == 2 + 3 * 6
    assert t.depth == 8
    assert np.bincount(depths(t.parents)).tolist() == [0, 1, 1, 3, 3, 3, 3, 3, 3]
    assert_top_k_children(t, 0)
    # A budget below the shape's size keeps the most probable nodes.
    assert len(build("static", 5, widths=[1, 1, 3, 1])) == 5


@given(budget=st.integers(0, 40), depth=st.integers(1, 8), topk=st.integers(1, 6), root=st.integers(0, 31))
@settings(max_examples=60, deadline=None)
def test_dynamic_budget_and_depth(budget, depth, topk, root):
    t = build("dynamic", budget, root=root, topk=topk, frontier=3, max_depth=depth)
    assert len(t) <= budget
    assert t.depth <= depth
    assert_top_k_children(t, root)
    # Kept nodes are the best by cumulative probability among all candidates grown.
    policy = registry.create("tree", "dynamic", topk=topk, frontier=3, max_depth=depth)
    candidates = grow_batch([policy.grow(budget)], lambda _, es: [PAIR.drafter(root)(e) for e in es])[0]
    if len(t):
        worst_kept = t.cum_probs.min()
        assert np.sum(candidates.cum_probs > worst_kept + 1e-12) <= len(t)


def test_dynamic_expands_most_probable_frontier():
    # Hand-built draft: root -> {1: .6, 2: .3, 3: .1}; under 1 -> {4: .9 ...}; others flat.
    table = np.full((8, 8), 1e-3)
    table[0, [1, 2, 3]] = [0.6, 0.3, 0.1]
    table[1, 4] = 0.9
    table[2, 5] = 0.9
    table[3, 6] = 0.9
    table /= table.sum(1, keepdims=True)
    pair = MarkovPair(table, table)
    policy = registry.create("tree", "dynamic", topk=3, frontier=2, max_depth=2)
    cand = grow_batch([policy.grow(99)], lambda _, es: [pair.drafter(0)(e) for e in es])[0]
    # Depth 2 expands only the two best depth-1 nodes (tokens 1 and 2), 3 children each.
    expanded = {int(cand.tokens[p]) for p in cand.parents if p >= 0}
    assert expanded == {1, 2}
    assert len(cand) == 3 + 2 * 3
    best4 = grow_tree(policy, pair.drafter(0), 4)
    assert sorted(best4.tokens.tolist()) == [1, 2, 4, 5]


def brute_force_sequoia(acc, n, max_depth):
    """Best expected-accepted sum over all ordered trees of <= n nodes (rank-children)."""

    def best(size, depth):
        if size == 0:
            return 0.0
        if depth == 0:
            return -np.inf
        out = -np.inf
        for k in range(1, min(size, len(acc)) + 1):
            for sizes in itertools.product(range(1, size + 1), repeat=k):
                if sum(sizes) != size:
                    continue
                v = sum(acc[r] * (1 + best(s - 1, depth - 1)) for r, s in enumerate(sizes))
                out = max(out, v)
        return out

    return max(best(m, max_depth) for m in range(n + 1))


@pytest.mark.parametrize("seed", range(6))
def test_sequoia_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    acc = np.sort(rng.uniform(0.05, 0.9, size=3))[::-1] if seed % 2 else rng.uniform(0.05, 0.9, size=3)
    for budget in range(0, 7):
        for max_depth in (1, 2, 3, 6):
            shape, value = sequoia_shape(acc, budget, max_depth)
            assert len(shape) <= budget
            if len(shape):
                assert depths(shape).max() <= max_depth
            expected = brute_force_sequoia(acc, budget, max_depth)
            assert value == pytest.approx(1.0 + expected), (acc, budget, max_depth)
            # The returned shape really achieves the value.
            rank = np.zeros(len(shape), dtype=int)
            for ks in children(shape):
                rank[ks] = np.arange(len(ks))
            path_p = np.ones(len(shape))
            for i, p in enumerate(shape):
                path_p[i] = acc[rank[i]] * (1.0 if p < 0 else path_p[p])
            assert 1.0 + path_p.sum() == pytest.approx(value)


def test_sequoia_policy_respects_budget_and_depth():
    for budget in (1, 8, 32):
        t = build("sequoia", budget, acceptance=[0.7, 0.2, 0.1], max_depth=4)
        assert 0 < len(t) <= budget and t.depth <= 4
        assert_top_k_children(t, 0)


def test_sequoia_with_chain_acceptance_is_a_chain():
    shape, value = sequoia_shape([0.9], 5, 10)
    assert shape.tolist() == [-1, 0, 1, 2, 3]
    assert value == pytest.approx(sum(0.9**i for i in range(6)))


def test_widths_shape():
    assert widths_shape([2, 1]).tolist() == [-1, -1, 0, 1]


def test_dynamic_cost_picks_the_best_ratio():
    cost = AffineCostModel(target_base_s=1e-3, target_per_token_s=2e-4, draft_base_s=2e-4, draft_per_token_s=0)
    policy = registry.create("tree", "dynamic-cost", cost_model=cost, topk=4, frontier=4, max_depth=5)
    cand = grow_batch([policy.grow(64)], lambda _, es: [PAIR.drafter(0)(e) for e in es])[0]
    b = policy.best_budget(cand, 64)
    cum = np.sort(cand.cum_probs)[::-1]
    draft_s = cand.depth * cost.draft_step_s(1, 4, 0)
    gain = expected_tokens(cum)
    ratios = [gain[k] / (draft_s + cost.target_forward_s(1, k + 1, 0)) for k in range(len(gain))]
    assert b == int(np.argmax(ratios))
    assert len(policy.select(cand, 64)) == b
    # Expensive verification per token -> smaller trees.
    steep = AffineCostModel(1e-3, 5e-3, 2e-4, 0)
    pricey = registry.create("tree", "dynamic-cost", cost_model=steep, topk=4, frontier=4, max_depth=5)
    assert pricey.best_budget(cand, 64) <= b


def test_dynamic_pruning_changes_nothing_but_rounds():
    """Frontier nodes that cannot reach the top-budget are not expanded; the result is the
    same tree EAGLE-2's unpruned growth selects."""
    from specgrove.policies.dynamic import Dynamic

    class Unpruned(Dynamic):
        def grow(self, budget):
            return super().grow(10**9)  # a floor of 0: expand max_depth rounds, always

    for root in range(0, 32, 5):
        for budget in (1, 3, 8, 20):
            rounds = {}
            trees = {}
            for name, cls in (("pruned", Dynamic), ("unpruned", Unpruned)):
                calls = []
                drafter = PAIR.drafter(root)
                t = grow_tree(cls(topk=3, frontier=3, max_depth=6), lambda e: calls.append(1) or drafter(e), budget)
                rounds[name], trees[name] = len(calls), t
            assert trees["pruned"] == trees["unpruned"]
            assert rounds["pruned"] <= rounds["unpruned"]


def test_dynamic_cost_requires_cost_model():
    with pytest.raises(ValueError, match="cost_model"):
        registry.create("tree", "dynamic-cost")


def test_grow_batch_equals_one_by_one():
    names = ["ar", "chain", "static", "sequoia", "dynamic"]
    roots = [0, 5, 9, 17, 31]
    policies = [registry.create("tree", n) for n in names]
    rounds = []

    def batched(ids, exps):
        rounds.append(len(exps))
        return [PAIR.drafter(roots[i])(e) for i, e in zip(ids, exps)]

    together = grow_batch([p.grow(16) for p in policies], batched)
    for policy, r, cand in zip(policies, roots, together):
        single = grow_batch([policy.grow(16)], lambda _, es, r=r: [PAIR.drafter(r)(e) for e in es])[0]
        assert cand == single
    # Every speculating request is answered in the first shared round.
    assert rounds[0] == len(names) - 1



def test_confidence_map_maps_confidence_to_acceptance():
    from specgrove.policies.confidence import ConfidenceMap

    cal = ConfidenceMap((0.0, 0.2, 0.5, 1.0), (0.1, 0.6, 0.95))
    np.testing.assert_allclose(cal(np.array([0.0, 0.19, 0.2, 0.49, 0.5, 1.0])), [0.1, 0.1, 0.6, 0.6, 0.95, 0.95])
    with pytest.raises(ValueError):
        ConfidenceMap((0.0, 0.5), (0.1, 0.2))
    with pytest.raises(ValueError):
        ConfidenceMap((0.0, 1.0), (1.5,))


def test_confidence_mapped_dynamic_prefers_confident_depth():
    # An under-confident draft: its top token has probability 0.26 but is (say) accepted 90%
    # of the time, the runner-up 0.22 and accepted rarely. Raw scores favour wide shallow
    # trees; calibrated scores favour the deep chain of top tokens.
    table = np.full((16, 16), 0.05)
    for a in range(16):
        table[a, (a + 1) % 16] = 0.35
        table[a, (a + 2) % 16] = 0.30
    table /= table.sum(1, keepdims=True)
    pair = MarkovPair(table, table)
    calib = {"edges": [0.0, 0.1, 0.24, 1.0], "acceptance": [0.02, 0.05, 0.9]}  # top is 0.26, next 0.22
    raw = grow_tree(registry.create("tree", "dynamic", topk=2, frontier=2, max_depth=6), pair.drafter(0), 6)
    cal = grow_tree(registry.create("tree", "dynamic", topk=2, frontier=2, max_depth=6, confidence=calib),
                    pair.drafter(0), 6)
    assert cal.depth == 6 > raw.depth
