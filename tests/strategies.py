"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from specgrove.tree import Tree


@st.composite
def trees(draw, max_nodes: int = 24, vocab: int = 50) -> Tree:
    """Valid random trees: parents before children, distinct sibling tokens."""
    n = draw(st.integers(0, max_nodes))
    parents, tokens, used = [], [], {}
    for i in range(n):
        open_parents = [q for q in range(-1, i) if len(used.get(q, ())) < vocab]
        p = draw(st.sampled_from(open_parents))
        taken = used.setdefault(p, set())
        free = [t for t in range(vocab) if t not in taken]
        t = draw(st.sampled_from(free))
        taken.add(t)
        parents.append(p)
        tokens.append(t)
    probs = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    return Tree(np.array(parents, dtype=np.int64), np.array(tokens, dtype=np.int64), np.array(probs))
