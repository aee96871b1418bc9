"""The shared speculation step: one draft call per round for the whole batch, the split's
budgets, and trees that are the policy's own selection."""

import numpy as np

from specgrove import registry
from specgrove.policies import grow_tree, speculate
from specgrove.policies.synthetic import MarkovPair

PAIR = MarkovPair.random(vocab=24, seed=5, agreement=0.7)


def test_speculate_matches_policy_alone_and_counts_rounds():
    policy = registry.create("tree", "dynamic", topk=3, frontier=2, max_depth=4)
    roots = [0, 7, 13]
    calls = []

    def draft(ids, expansions):
        calls.append(list(ids))
        return [PAIR.drafter(roots[i])(e) for i, e in zip(ids, expansions)]

    spec = speculate(policy, registry.get("batch-budget", "uniform"), 5, 15, [10, 20, 30], draft)
    assert spec.budgets == [5, 5, 5]
    assert spec.num_rounds == len(calls) == max(c.depth for c in spec.candidates)
    assert calls[0] == [0, 1, 2]  # the first round serves every request at once
    # Round widths count expanded nodes: the root alone for each request first.
    assert spec.round_widths[0] == 3
    for root, tree in zip(roots, spec.trees):
        assert tree == grow_tree(policy, PAIR.drafter(root), 5)


def test_speculate_uses_the_split():
    policy = registry.create("tree", "chain", length=4)
    draft = lambda ids, exps: [PAIR.drafter(1)(e) for e in exps]  # noqa: E731
    spec = speculate(policy, lambda scores, total: [total, 0], 4, 3, [5, 5], draft)
    assert spec.budgets == [3, 0]
    assert [len(t) for t in spec.trees] == [3, 0]
    assert [len(c) for c in spec.candidates] == [4, 4]
    assert np.array_equal(spec.trees[0].tokens, spec.candidates[0].tokens[:3])
