import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import trees

from specgrove.packing import pack_trees
from specgrove.tree import path_to


def brute_force_mask(trees_, prefix_lens):
    """Enumerate (query, key) pairs from first principles."""
    queries = []  # (request, node or -1 for the root)
    for r, t in enumerate(trees_):
        queries += [(r, -1)] + [(r, i) for i in range(len(t))]
    keys = [("prefix", r, j) for r, p in enumerate(prefix_lens) for j in range(p)]
    keys += [("new", r, i) for r, i in queries]
    mask = np.zeros((len(queries), len(keys)), dtype=bool)
    for qi, (r, node) in enumerate(queries):
        visible = {-1} | set(path_to(trees_[r].parents, node))
        for ki, key in enumerate(keys):
            if key[0] == "prefix":
                mask[qi, ki] = key[1] == r
            else:
                mask[qi, ki] = key[1] == r and key[2] in visible
    return mask


@given(st.lists(st.tuples(trees(max_nodes=8), st.integers(0, 6)), min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_packed_mask_matches_brute_force(batch):
    trees_ = [t for t, _ in batch]
    prefix = [p for _, p in batch]
    roots = list(range(100, 100 + len(batch)))
    packed = pack_trees(trees_, roots, prefix)
    np.testing.assert_array_equal(packed.mask, brute_force_mask(trees_, prefix))
    for r, t in enumerate(trees_):
        q0, q1 = packed.query_starts[r], packed.query_starts[r + 1]
        assert packed.tokens[q0] == roots[r]
        assert packed.tokens[q0 + 1 : q1].tolist() == t.tokens.tolist()
        assert (packed.request_index[q0:q1] == r).all()
        assert packed.positions[q0] == prefix[r]
        for i in range(len(t)):
            assert packed.positions[q0 + 1 + i] == prefix[r] + len(path_to(t.parents, i))


def test_golden_two_requests():
    from specgrove.tree import Tree

    a = Tree([-1, 0], [5, 6])  # chain of 2
    b = Tree([-1, -1], [7, 8])  # two siblings
    packed = pack_trees([a, b], [1, 2], [2, 1])
    assert packed.tokens.tolist() == [1, 5, 6, 2, 7, 8]
    assert packed.positions.tolist() == [2, 3, 4, 1, 2, 2]
    # keys: a-prefix(2), b-prefix(1), then the 6 new tokens
    expected = np.array(
        [
            [1, 1, 0, 1, 0, 0, 0, 0, 0],
            [1, 1, 0, 1, 1, 0, 0, 0, 0],
            [1, 1, 0, 1, 1, 1, 0, 0, 0],
            [0, 0, 1, 0, 0, 0, 1, 0, 0],
            [0, 0, 1, 0, 0, 0, 1, 1, 0],
            [0, 0, 1, 0, 0, 0, 1, 0, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(packed.mask, expected)
