"""The tree layout (positions, slots, rows, bit-packed ancestor mask) against a brute-force walk
of the parents, a hand-computed golden case and ``pack_trees``; the CUDA kernel against the
torch reference where CuPy and a GPU exist."""

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (the 'executor' extra)")

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from strategies import trees  # noqa: E402

from specgrove.kernels import _cupy  # noqa: E402
from specgrove.kernels.tree_layout import (  # noqa: E402
    check_inputs,
    tree_layout_cupy,
    tree_layout_reference,
)
from specgrove.packing import pack_trees  # noqa: E402


def i32(values):
    return torch.tensor(values, dtype=torch.int32)


@st.composite
def batches(draw, max_requests=8, max_len=70):
    """Ragged batches: per request a slice of 1..max_len tokens, root first, parents earlier."""
    num = draw(st.integers(1, max_requests))
    parents, starts = [], [0]
    for _ in range(num):
        n = draw(st.integers(1, max_len))
        parents += [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
        starts.append(starts[-1] + n)
    prefix = draw(st.lists(st.integers(0, 500), min_size=num, max_size=num))
    rows = draw(st.lists(st.integers(0, 63), min_size=num, max_size=num))
    return parents, starts, prefix, rows


def brute_force(parents, starts, prefix, rows):
    """Plain Python: walk each token's parents up to its root."""
    max_len = max(b - a for a, b in zip(starts, starts[1:]))
    width = max(1, -(-max_len // 32))
    positions, slots, token_rows = [], [], []
    bitmask = np.zeros((len(parents), width), dtype=np.uint32)
    for r, (a, b) in enumerate(zip(starts, starts[1:])):
        for local in range(b - a):
            node, depth = local, 0
            while True:
                bitmask[a + local, node // 32] |= np.uint32(1 << (node % 32))
                if parents[a + node] < 0:
                    break
                node, depth = parents[a + node], depth + 1
            positions.append(prefix[r] + depth)
            slots.append(prefix[r] + local)
            token_rows.append(rows[r])
    return positions, slots, token_rows, bitmask.view(np.int32)


def unpack(bitmask, width):
    """(T, W) int32 words -> (T, width) bool: bit j of word j // 32."""
    words = bitmask.numpy().view(np.uint32).astype(np.uint64)
    j = np.arange(width)
    return ((words[:, j // 32] >> (j % 32).astype(np.uint64)) & 1).astype(bool)


@settings(max_examples=60, deadline=None)
@given(batches(), st.booleans())
def test_reference_matches_brute_force(batch, check):
    parents, starts, prefix, rows = batch
    layout = tree_layout_reference(i32(parents), i32(starts), i32(prefix), i32(rows), check=check)
    positions, slots, token_rows, bitmask = brute_force(parents, starts, prefix, rows)
    assert layout.positions.dtype == layout.slots.dtype == layout.rows.dtype == torch.int64
    assert layout.positions.tolist() == positions
    assert layout.slots.tolist() == slots
    assert layout.rows.tolist() == token_rows
    assert layout.bitmask.dtype == torch.int32
    np.testing.assert_array_equal(layout.bitmask.numpy(), bitmask)
    assert layout.max_len == max(b - a for a, b in zip(starts, starts[1:]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 63)), min_size=1, max_size=16), st.booleans())
def test_lone_roots_take_the_short_path_to_the_same_layout(requests, check):
    """A plain decoding step (every slice a lone root) skips the pointer jumping: its layout
    is still the definition's, with the dtypes and the one word of the general path."""
    prefix, rows = [p for p, _ in requests], [r for _, r in requests]
    parents, starts = [-1] * len(requests), list(range(len(requests) + 1))
    layout = tree_layout_reference(i32(parents), i32(starts), i32(prefix), i32(rows), max_len=1, check=check)
    positions, slots, token_rows, bitmask = brute_force(parents, starts, prefix, rows)
    assert layout.positions.dtype == layout.slots.dtype == layout.rows.dtype == torch.int64
    assert layout.positions.tolist() == positions and layout.slots.tolist() == slots
    assert layout.rows.tolist() == token_rows
    assert layout.bitmask.dtype == torch.int32
    np.testing.assert_array_equal(layout.bitmask.numpy(), bitmask)
    assert layout.max_len == 1


def test_golden_small_tree():
    # Request 0, prefix 5, row 2:      root(0)
    #                                  /     \
    #                                1        2
    #                               / \        \
    #                              3   4        5
    #                              |
    #                              6
    # Request 1: a lone root, prefix 0, row 0.
    layout = tree_layout_reference(i32([-1, 0, 0, 1, 1, 2, 3, -1]), i32([0, 7, 8]), i32([5, 0]),
                                   i32([2, 0]))
    assert layout.positions.tolist() == [5, 6, 6, 7, 7, 7, 8, 0]
    assert layout.slots.tolist() == [5, 6, 7, 8, 9, 10, 11, 0]
    assert layout.rows.tolist() == [2] * 7 + [0]
    # Ancestor-or-self sets: {0}, {0,1}, {0,2}, {0,1,3}, {0,1,4}, {0,2,5}, {0,1,3,6}; {0}.
    expected = [0b1, 0b11, 0b101, 0b1011, 0b10011, 0b100101, 0b1001011, 0b1]
    assert layout.bitmask.tolist() == [[w] for w in expected]
    assert layout.max_len == 7 and layout.num_words == 1
    assert layout.request_rows.tolist() == [2, 0]


def test_golden_chain_across_words():
    # A chain of 34 tokens: token t sees tokens 0..t, so the last one fills word 0 (all 32 bits,
    # -1 as int32) and bits 0 and 1 of word 1.
    layout = tree_layout_reference(i32([-1] + list(range(33))), i32([0, 34]), i32([3]), i32([1]))
    assert layout.num_words == 2
    assert layout.bitmask[0].tolist() == [1, 0]
    assert layout.bitmask[30].tolist() == [2**31 - 1, 0]
    assert layout.bitmask[31].tolist() == [-1, 0]
    assert layout.bitmask[33].tolist() == [-1, 0b11]
    assert layout.positions.tolist() == list(range(3, 37))


def test_max_len_argument_pads_words():
    layout = tree_layout_reference(i32([-1, 0]), i32([0, 2]), i32([0]), i32([0]), max_len=40)
    assert layout.num_words == 2 and layout.bitmask.tolist() == [[1, 0], [3, 0]]


@settings(max_examples=30, deadline=None)
@given(st.lists(trees(max_nodes=40), min_size=1, max_size=4), st.data())
def test_agrees_with_pack_trees(tree_list, data):
    prefix = data.draw(st.lists(st.integers(0, 100), min_size=len(tree_list),
                                max_size=len(tree_list)))
    packed = pack_trees(tree_list, [7] * len(tree_list), prefix)
    # The packed slice is [root, nodes...]: the root's parent is -1 and node i's is parents[i]+1.
    parents = np.concatenate([np.r_[-1, t.parents + 1] for t in tree_list])
    layout = tree_layout_reference(i32(parents.tolist()), i32(packed.query_starts.tolist()),
                                   i32(prefix), i32(list(range(len(tree_list)))))
    assert layout.positions.tolist() == packed.positions.tolist()
    for r, own in enumerate(packed.tree_masks):
        q0, q1 = packed.query_starts[r], packed.query_starts[r + 1]
        np.testing.assert_array_equal(unpack(layout.bitmask[q0:q1], q1 - q0), own)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((i32([-1]).long(), i32([0, 1]), i32([0]), i32([0])), "parents must be int32"),
        ((i32([[-1]]), i32([0, 1]), i32([0]), i32([0])), "parents must be 1-D"),
        ((i32([-1]), i32([0, 1]), i32([0]), [0]), "rows must be a torch tensor"),
        ((i32([-1]), i32([0, 1]), i32([0]), i32([0, 1])), "rows has 2 entries"),
        ((i32([-1]), i32([0, 1, 1]), i32([0]), i32([0])), "query_starts must have B\\+1 = 2"),
        ((i32([-1]), i32([0]), i32([]), i32([])), "no requests"),
    ],
)
def test_input_errors(args, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(*args)
    with pytest.raises(ValueError, match=message):
        tree_layout_reference(*args)


def test_bad_max_len():
    with pytest.raises(ValueError, match="max_len must be None or an int"):
        tree_layout_reference(i32([-1]), i32([0, 1]), i32([0]), i32([0]), max_len=-1)
    with pytest.raises(ValueError, match="below the longest slice"):
        tree_layout_reference(i32([-1, 0]), i32([0, 2]), i32([0]), i32([0]), max_len=1)


@pytest.mark.parametrize(
    ("parents", "starts", "prefix", "rows", "message"),
    [
        ([-1, 0], [0, 1], [0], [0], "run from 0 to T = 2"),
        ([-1, -1], [0, 0, 2], [0, 0], [0, 0], "request 0: empty slice"),
        ([-1], [0, 1], [-3], [0], "negative prefix_lens"),
        ([-1], [0, 1], [0], [-1], "negative rows"),
        ([0, 0], [0, 2], [0], [0], r"token 0: parent 0 must be -1"),
        ([-1, 1], [0, 2], [0], [0], r"token 1: parent 1 must be in \[0, 1\)"),
        ([-1, -1, -1], [0, 1, 3], [0, 0], [0, 0], r"token 2: parent -1 must be in \[0, 1\)"),
    ],
)
def test_structure_errors(parents, starts, prefix, rows, message):
    with pytest.raises(ValueError, match=message):
        tree_layout_reference(i32(parents), i32(starts), i32(prefix), i32(rows))


needs_cupy = pytest.mark.skipif(_cupy.unavailable("cuda") is not None,
                                reason=str(_cupy.unavailable("cuda")))


def assert_same(a, b):
    for name in ("positions", "slots", "rows", "bitmask"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x.cpu(), y.cpu()), name
    assert a.max_len == b.max_len


@needs_cupy
@settings(max_examples=40, deadline=None)
@given(batches(max_requests=8, max_len=70), st.booleans())
def test_cupy_matches_reference(batch, pass_max_len):
    tensors = [i32(x).cuda() for x in batch]
    max_len = max(b - a for a, b in zip(batch[1], batch[1][1:])) if pass_max_len else None
    expected = tree_layout_reference(*tensors, max_len=max_len)
    assert expected.bitmask.is_cuda
    assert_same(tree_layout_cupy(*tensors, max_len=max_len), expected)


@needs_cupy
def test_cupy_large_batch_and_padding():
    rng = np.random.default_rng(0)
    parents, starts = [], [0]
    for _ in range(300):  # more tokens than one block of threads, slices up to 3 words
        n = int(rng.integers(1, 97))
        parents += [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
        starts.append(starts[-1] + n)
    prefix = rng.integers(0, 4000, size=300).tolist()
    rows = rng.permutation(300).tolist()
    tensors = [i32(x).cuda() for x in (parents, starts, prefix, rows)]
    assert_same(tree_layout_cupy(*tensors), tree_layout_reference(*tensors))
    padded = tree_layout_cupy(*tensors, max_len=200)  # 7 words; the extra ones stay zero
    assert_same(padded, tree_layout_reference(*tensors, max_len=200))


@needs_cupy
def test_cupy_checks():
    args = [i32(x).cuda() for x in ([-1, 1], [0, 2], [0], [0])]
    tree_layout_cupy(*args)  # malformed, unchecked: must still finish (the walk is bounded)
    torch.cuda.synchronize()
    with pytest.raises(ValueError, match="token 1"):
        tree_layout_cupy(*args, check=True)
    with pytest.raises(ValueError, match="same device|is on"):
        tree_layout_cupy(args[0], args[1].cpu(), args[2], args[3])
