"""KV compaction against a brute-force copy (every move reads the cache as it was before any
write: gather-before-scatter), in all three dtypes; the CUDA kernel against the torch
reference where CuPy and a GPU exist."""

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (the 'executor' extra)")

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from specgrove.kernels import _cupy  # noqa: E402
from specgrove.kernels.kv_compact import (  # noqa: E402
    check_inputs,
    compact_cupy,
    compact_reference,
    group_moves,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_cache(shape, dtype, seed, device="cpu"):
    """Values in +-[1, 2): never zero, so a missed or misplaced copy always shows."""
    g = torch.Generator().manual_seed(seed)
    magnitude = 1 + torch.rand(shape, generator=g)
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
    return (magnitude * sign).to(dtype).to(device)


def bits(t):
    """The raw bits as numpy (numpy has no bfloat16)."""
    t = t.cpu()
    return t.view(torch.int32 if t.element_size() == 4 else torch.int16).numpy()


def brute_force(k, v, moves):
    """Plain loop over moves, each reading a snapshot taken before the first write."""
    out = []
    for cache in (k, v):
        before = bits(cache).copy()
        after = before.copy()
        for r, s, d in moves:
            after[:, r, :, d] = before[:, r, :, s]
        out.append(after)
    return out


@st.composite
def compactions(draw):
    """A cache shape and moves: distinct destinations per row, any sources (so a destination is
    often another move's source), rows interleaved in a random order."""
    layers, rows, heads = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    max_len, head_dim = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    moves = []
    for r in range(rows):
        count = draw(st.integers(0, max_len))
        dsts = draw(st.permutations(range(max_len)))[:count]
        moves += [(r, draw(st.integers(0, max_len - 1)), d) for d in dsts]
    moves = draw(st.permutations(moves))
    return (layers, rows, heads, max_len, head_dim), moves


def as_tensors(moves, dtype=torch.int64, device="cpu"):
    cols = list(zip(*moves)) if moves else ([], [], [])
    return [torch.tensor(c, dtype=dtype, device=device) for c in cols]


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(case=compactions(), index_dtype=st.sampled_from([torch.int32, torch.int64]),
       seed=st.integers(0, 2**16), check=st.booleans())
def test_reference_matches_brute_force(dtype, case, index_dtype, seed, check):
    shape, moves = case
    k, v = random_cache(shape, dtype, seed), random_cache(shape, dtype, seed + 1)
    expected_k, expected_v = brute_force(k, v, moves)
    compact_reference(k, v, *as_tensors(moves, index_dtype), check=check)
    np.testing.assert_array_equal(bits(k), expected_k)
    np.testing.assert_array_equal(bits(v), expected_v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_overlapping_moves_gather_before_scatter(dtype):
    # Row 1 rotates slots 0..2 (each destination is another move's source) and row 0 shifts
    # slot 3 down while slot 1 moves up over it: moving one at a time would copy copies.
    shape = (2, 2, 2, 5, 3)
    k, v = random_cache(shape, dtype, 1), random_cache(shape, dtype, 2)
    old_k, old_v = k.clone(), v.clone()
    moves = [(1, 2, 1), (1, 1, 0), (1, 0, 2), (0, 3, 1), (0, 1, 3)]
    compact_reference(k, v, *as_tensors(moves))
    for new, old in ((k, old_k), (v, old_v)):
        for r, s, d in moves:
            assert torch.equal(new[:, r, :, d], old[:, r, :, s])
        assert torch.equal(new[:, :, :, 4], old[:, :, :, 4])  # untouched slot
        assert torch.equal(new[:, 0, :, [0, 2]], old[:, 0, :, [0, 2]])
    sequential = old_k.clone()
    for r, s, d in moves:
        sequential[:, r, :, d] = sequential[:, r, :, s]
    assert not torch.equal(sequential, k)  # the case does tell the two semantics apart


def test_no_moves_is_a_no_op():
    k, v = random_cache((1, 2, 1, 4, 2), torch.float16, 3), random_cache((1, 2, 1, 4, 2),
                                                                          torch.float16, 4)
    before = k.clone()
    compact_reference(k, v, *as_tensors([]))
    assert torch.equal(k, before)


def _valid():
    k = random_cache((2, 3, 2, 6, 4), torch.float32, 0)
    return [k, k.clone(), *as_tensors([(0, 1, 0), (2, 5, 3)])]


def _with(i, value):
    args = _valid()
    args[i] = value
    return args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_with(0, torch.zeros(2, 3, 6, 4)), r"k must be \(layers, rows"),
        (_with(1, torch.zeros(2, 3, 2, 6, 4, dtype=torch.float16)), "must match k"),
        (_with(1, torch.zeros(2, 3, 2, 7, 4)), "must match k"),
        (_with(0, torch.zeros(2, 3, 2, 6, 4, dtype=torch.int32)), "cache dtype must be"),
        (_with(0, torch.zeros(2, 3, 2, 4, 6).transpose(3, 4)), "must be contiguous"),
        (_with(2, torch.tensor([0.0, 2.0])), "rows must be int32 or int64"),
        (_with(3, torch.tensor([[1, 5]])), "src must be 1-D"),
        (_with(4, torch.tensor([0])), "differ in length: 2, 2, 1"),
        (_with(4, [0, 3]), "dst must be a torch tensor"),
    ],
)
def test_input_errors(args, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(*args)
    with pytest.raises(ValueError, match=message):
        compact_reference(*args)


@pytest.mark.parametrize(
    ("moves", "max_moves", "message"),
    [
        ([(3, 0, 1)], None, r"move 0: rows 3 is outside \[0, 3\)"),
        ([(0, 0, 1), (1, -1, 2)], None, r"move 1: src -1 is outside \[0, 6\)"),
        ([(0, 0, 6)], None, r"move 0: dst 6 is outside \[0, 6\)"),
        ([(1, 0, 2), (1, 3, 2)], None, "same \\(row, dst\\) slot"),
        ([(1, 0, 2), (1, 3, 1)], 1, "a row has 2 moves, above max_moves_per_row 1"),
        ([(1, 0, 2)], -1, "max_moves_per_row must be None or an int >= 0"),
    ],
)
def test_structure_errors(moves, max_moves, message):
    k = random_cache((2, 3, 2, 6, 4), torch.float32, 0)
    before = k.clone()
    with pytest.raises(ValueError, match=message):
        compact_reference(k, k.clone(), *as_tensors(moves), max_moves)
    assert torch.equal(k, before)  # rejected before any write


@settings(max_examples=60, deadline=None)
@given(case=compactions())
def test_group_moves_partitions_the_moves_by_row(case):
    # The kernel's grid comes from this grouping (CPU-testable: torch ops only): each group
    # names one row, every row with moves is one of the first groups, and a row's range of
    # ``order`` holds exactly its moves, in their original order.
    (_, num_rows, _, _, _), moves = case
    rows = torch.tensor([m[0] for m in moves], dtype=torch.int64)
    order, row_starts, group_rows = group_moves(rows, num_rows)
    assert group_rows.numel() == min(len(moves), num_rows)
    busy = sorted({m[0] for m in moves})
    assert group_rows.tolist()[: len(busy)] == busy
    for g, r in enumerate(group_rows.tolist()):
        own = order[row_starts[r] : row_starts[r + 1]].tolist()
        assert own == [i for i, m in enumerate(moves) if m[0] == r]
        assert bool(own) == (g < len(busy))


def test_group_moves_drops_rows_out_of_range():
    order, row_starts, group_rows = group_moves(torch.tensor([5, 1, -1, 1]), 3)
    assert row_starts.tolist() == [1, 1, 3, 3]  # row 1 holds sorted moves 1..2; -1 and 5 none
    assert order[1:3].tolist() == [1, 3] and group_rows.tolist() == [1, 0, 2]


needs_cupy = pytest.mark.skipif(_cupy.unavailable("cuda") is not None,
                                reason=str(_cupy.unavailable("cuda")))


def both_ways(shape, dtype, moves, seed, index_dtype=torch.int64, max_moves=None):
    """Kernel and reference on equal CUDA caches; returns both (k, v) pairs."""
    k, v = random_cache(shape, dtype, seed, "cuda"), random_cache(shape, dtype, seed + 1, "cuda")
    kk, vv = k.clone(), v.clone()
    idx = as_tensors(moves, index_dtype, "cuda")
    compact_reference(k, v, *idx)
    compact_cupy(kk, vv, *idx, max_moves)
    return (k, v), (kk, vv)


@needs_cupy
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(case=compactions(), index_dtype=st.sampled_from([torch.int32, torch.int64]),
       seed=st.integers(0, 2**16), pass_max=st.booleans())
def test_cupy_matches_reference(dtype, case, index_dtype, seed, pass_max):
    shape, moves = case
    max_moves = None
    if pass_max:  # an upper bound, as the executor passes it, not necessarily the exact max
        max_moves = shape[3]
    (k, v), (kk, vv) = both_ways(shape, dtype, moves, seed, index_dtype, max_moves)
    np.testing.assert_array_equal(bits(kk), bits(k))
    np.testing.assert_array_equal(bits(vv), bits(v))


@needs_cupy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", [64, 128, 127])  # 127: 16-bit words for fp16/bf16
def test_cupy_realistic_sizes(dtype, head_dim):
    # 24 of 32 rows each compact a 9-token accepted path out of a 60-node tree after a prefix.
    rng = np.random.default_rng(head_dim)
    moves = []
    for r in rng.permutation(32)[:24].tolist():
        prefix = int(rng.integers(0, 100))
        picked = sorted(rng.choice(61, size=9, replace=False).tolist())
        moves += [(r, prefix + p, prefix + i) for i, p in enumerate(picked)]
    order = rng.permutation(len(moves))
    moves = [moves[i] for i in order]
    (k, v), (kk, vv) = both_ways((4, 32, 2, 200, head_dim), dtype, moves, 7, max_moves=61)
    np.testing.assert_array_equal(bits(kk), bits(k))
    np.testing.assert_array_equal(bits(vv), bits(v))


@needs_cupy
def test_cupy_shared_memory_limit_and_checks():
    k = random_cache((1, 2, 1, 400, 128), torch.float32, 0, "cuda")
    v = k.clone()
    idx = as_tensors([(0, 1, 0)], device="cuda")
    with pytest.raises(ValueError, match="shared memory"):
        compact_cupy(k, v, *idx, 200)  # 200 x 512 bytes > 48 KiB
    with pytest.raises(ValueError, match="same \\(row, dst\\)"):
        compact_cupy(k, v, *as_tensors([(0, 1, 0), (0, 2, 0)], device="cuda"), check=True)
    # An understated bound, unchecked: the over-full row is left alone, the others compact.
    before = k.clone()
    compact_cupy(k, v, *as_tensors([(0, 1, 0), (0, 2, 3), (1, 5, 4)], device="cuda"), 1)
    assert torch.equal(k[:, 0], before[:, 0])
    assert torch.equal(k[:, 1, :, 4], before[:, 1, :, 5])
