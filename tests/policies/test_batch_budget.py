import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from specgrove import registry

scores_lists = st.lists(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=12).map(np.array),
    min_size=1,
    max_size=6,
)


@given(scores_lists, st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_uniform(scores, total):
    budgets = registry.get("batch-budget", "uniform")(scores, total)
    assert sum(budgets) <= total
    for b, s in zip(budgets, scores):
        assert 0 <= b <= len(s)
        assert b >= min(len(s), total // len(scores))


@given(scores_lists, st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_greedy_global_takes_the_global_top(scores, total):
    budgets = registry.get("batch-budget", "greedy-global")(scores, total)
    available = sum(len(s) for s in scores)
    assert sum(budgets) == min(total, available)
    # Brute force: the multiset of chosen scores equals the global top-N.
    chosen = np.concatenate([np.sort(s)[::-1][:b] for s, b in zip(scores, budgets)] + [[]])
    everything = np.sort(np.concatenate(list(scores) + [[]]))[::-1]
    np.testing.assert_allclose(np.sort(chosen)[::-1], everything[: len(chosen)])


def test_greedy_global_golden():
    scores = [np.array([0.9, 0.5, 0.1]), np.array([0.8, 0.7, 0.6]), np.array([])]
    assert registry.get("batch-budget", "greedy-global")(scores, 4) == [1, 3, 0]
    assert registry.get("batch-budget", "uniform")(scores, 4) == [2, 1, 0]
