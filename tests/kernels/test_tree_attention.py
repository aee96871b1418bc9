"""Ragged tree attention: the torch reference against a brute-force float64 definition written
here (loops per request and query), and the CUDA kernel against the reference on a GPU.

Definition: query q of request r attends to every cached prefix slot of r's cache row, and to
new token j of r (slot prefix + j) iff bit j of bitmask[q] is set; softmax(q.k * scale) over
exactly those keys, weights times values.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="tree attention needs torch (the 'executor' extra)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from specgrove.kernels import _cupy  # noqa: E402
from specgrove.kernels.tree_attention import (  # noqa: E402
    check_inputs,
    tree_attention_cupy,
    tree_attention_reference,
)


def ancestor_bits(parents) -> list[int]:
    """Bit set of each token's ancestors and itself, from a parent array (parent[0] = -1)."""
    bits = []
    for i, p in enumerate(parents):
        bits.append((bits[p] if p >= 0 else 0) | (1 << i))
    return bits


def make_case(lens, prefixes, num_kv_heads=2, group=1, head_dim=8, dtype=torch.float32, seed=0,
              spare_rows=2, slack=3, device="cpu"):
    """Random inputs: random trees (parent of i > 0 uniform in [0, i)), rows a random subset
    of the cache in random order, values from randn (never zeros)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    num_requests = len(lens)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    num_tokens = int(starts[-1])
    words = max(1, math.ceil(max(lens) / 32))
    bitmask = np.zeros((num_tokens, words), dtype=np.int64)
    parents = []
    for r, n in enumerate(lens):
        par = [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
        parents.append(par)
        for i, b in enumerate(ancestor_bits(par)):
            for w in range(words):
                bitmask[starts[r] + i, w] = (b >> (32 * w)) & 0xFFFFFFFF
    num_rows = num_requests + spare_rows
    rows = rng.permutation(num_rows)[:num_requests]
    cache_len = max(p + n for p, n in zip(prefixes, lens)) + slack
    shape = (num_rows, num_kv_heads, cache_len, head_dim)
    q = torch.randn(num_tokens, num_kv_heads * group, head_dim, generator=gen)
    k, v = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    as_i32 = lambda a: torch.tensor(np.asarray(a, dtype=np.int64).astype(np.int32), device=device)  # noqa: E731
    return dict(q=q.to(device, dtype), k_cache=k.to(device, dtype), v_cache=v.to(device, dtype),
                query_starts=as_i32(starts), prefix_lens=as_i32(prefixes), request_rows=as_i32(rows),
                bitmask=as_i32(bitmask.astype(np.uint32).view(np.int32)))


def brute_force(case, scale=None) -> np.ndarray:
    """The definition, token by token, in float64."""
    q = case["q"].double().cpu().numpy()
    k, v = case["k_cache"].double().cpu().numpy(), case["v_cache"].double().cpu().numpy()
    starts, prefixes = case["query_starts"].tolist(), case["prefix_lens"].tolist()
    rows, bitmask = case["request_rows"].tolist(), case["bitmask"].cpu().numpy().astype(np.int64)
    num_q_heads, head_dim = q.shape[1], q.shape[2]
    group = num_q_heads // k.shape[1]
    scale = head_dim ** -0.5 if scale is None else scale
    out = np.empty_like(q)
    for r in range(len(prefixes)):
        for t in range(starts[r], starts[r + 1]):
            mask = sum((int(w) & 0xFFFFFFFF) << (32 * i) for i, w in enumerate(bitmask[t]))
            tree = [j for j in range(starts[r + 1] - starts[r]) if mask >> j & 1]
            slots = list(range(prefixes[r])) + [prefixes[r] + j for j in tree]
            for h in range(num_q_heads):
                keys, values = k[rows[r], h // group, slots], v[rows[r], h // group, slots]
                s = keys @ q[t, h] * scale
                w = np.exp(s - s.max())
                out[t, h] = (w / w.sum()) @ values
    return out


cases = st.fixed_dictionaries({
    "lens": st.lists(st.integers(1, 70), min_size=1, max_size=6),
    "group": st.sampled_from([1, 2]),
    "num_kv_heads": st.integers(1, 2),
    "seed": st.integers(0, 2**31),
}).flatmap(lambda c: st.lists(st.integers(0, 40), min_size=len(c["lens"]), max_size=len(c["lens"]))
           .map(lambda p: {**c, "prefixes": p}))


@settings(max_examples=40, deadline=None)
@given(cases)
def test_reference_matches_the_definition_float32(c):
    case = make_case(**c)
    want = brute_force(case)
    got = tree_attention_reference(**case)
    assert got.dtype == torch.float32 and got.shape == case["q"].shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)


# Inputs are rounded to the dtype first and the definition sees the rounded values, so only
# the arithmetic and the output rounding differ: |out| <= ~4 and 2^-8 (bf16) or 2^-11 (fp16)
# relative rounding, with intermediate roundings on top.
LOW_PRECISION_ATOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}  # seen: 7.7e-3, 1.1e-3


@pytest.mark.parametrize("dtype", list(LOW_PRECISION_ATOL), ids=str)
@settings(max_examples=10, deadline=None)
@given(c=cases)
def test_reference_in_low_precision(dtype, c):
    case = make_case(**c, dtype=dtype)
    got = tree_attention_reference(**case)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), brute_force(case), atol=LOW_PRECISION_ATOL[dtype], rtol=0)


@pytest.mark.parametrize("consecutive", [True, False])
def test_lone_roots_take_the_short_path_to_the_definition(consecutive):
    """A plain decoding step (every slice a lone root) builds its mask in a few ops: the same
    attention as the definition, including a query whose own bit is clear (it sees only its
    prefix) and one with no prefix (only itself)."""
    prefixes = [5, 0, 17, 3, 9, 1]
    case = make_case([1] * len(prefixes), prefixes, num_kv_heads=2, group=2, seed=11)
    if consecutive:
        case["request_rows"] = torch.arange(2, 2 + len(prefixes), dtype=torch.int32)
    case["bitmask"][2, 0] = 0  # request 2 does not see its own slot
    got = tree_attention_reference(**case)
    np.testing.assert_allclose(got.double().numpy(), brute_force(case), rtol=1e-5, atol=1e-5)
    got_sized = tree_attention_reference(**case, max_len=1, num_keys=18)
    assert torch.equal(got_sized, got)


def test_scale_and_explicit_sizes():
    case = make_case([5, 33, 1], [0, 7, 40], num_kv_heads=2, group=2, seed=3)
    got = tree_attention_reference(**case, scale=0.7, max_len=33, num_keys=43)  # 41 needed
    np.testing.assert_allclose(got.numpy(), brute_force(case, scale=0.7), atol=1e-5, rtol=1e-5)


def test_one_flipped_bit_changes_exactly_its_query():
    """The reference reads the mask: a chain of 3 tokens over a prefix of 2; token 2 forgets
    its ancestor 0. Only token 2's output may move, and it must."""
    case = make_case([3], [2], seed=1)
    case["bitmask"] = torch.tensor([[0b001], [0b011], [0b111]], dtype=torch.int32)
    before = tree_attention_reference(**case)
    case["bitmask"][2, 0] = 0b110
    after = tree_attention_reference(**case)
    assert torch.equal(before[:2], after[:2])
    assert (before[2] - after[2]).abs().max() > 1e-3
    np.testing.assert_allclose(after.numpy(), brute_force(case), atol=1e-5, rtol=1e-5)


def test_high_bit_of_a_second_word():
    """Bit 31 (the sign bit of an int32 word) and bits of word 1 are read right."""
    case = make_case([40], [3], seed=2)
    np.testing.assert_allclose(tree_attention_reference(**case).numpy(), brute_force(case), atol=1e-5)
    case["bitmask"][39] = torch.tensor([-(2**31), 0b10000001], dtype=torch.int32)  # tokens 31, 32, 39
    np.testing.assert_allclose(tree_attention_reference(**case).numpy(), brute_force(case), atol=1e-5)


def _bad(**change):
    case = make_case([3, 2], [1, 4], num_kv_heads=2, group=2, seed=5)
    case.update({k: (f(case) if callable(f) else f) for k, f in change.items()})
    return case


@pytest.mark.parametrize("change, message", [
    ({"q": lambda c: c["q"][0]}, "q must be"),
    ({"k_cache": lambda c: c["k_cache"][0]}, "k_cache must be"),
    ({"v_cache": lambda c: c["v_cache"][:, :1]}, "differ"),
    ({"q": lambda c: c["q"][..., :4]}, "head_dim"),
    ({"q": lambda c: c["q"][:, :3]}, "multiple of kv heads"),
    ({"q": lambda c: c["q"].double()}, "one floating dtype"),
    ({"prefix_lens": lambda c: c["prefix_lens"].long()}, "prefix_lens must be a 1-D int32"),
    ({"request_rows": lambda c: c["request_rows"][:1]}, "query_starts needs B\\+1"),
    ({"bitmask": lambda c: c["bitmask"][:4]}, "bitmask must be"),
    ({"query_starts": lambda c: torch.tensor([0, 3, 4], dtype=torch.int32)}, "ascend from 0 to T"),
    ({"query_starts": lambda c: torch.tensor([0, 4, 3], dtype=torch.int32)}, "ascend from 0 to T"),
    ({"prefix_lens": lambda c: torch.tensor([1, 30], dtype=torch.int32)}, "prefix_lens \\+ slice"),
    ({"request_rows": lambda c: torch.tensor([0, 9], dtype=torch.int32)}, "request_rows must lie"),
])
def test_validation_errors(change, message):
    with pytest.raises(ValueError, match=message):
        tree_attention_reference(**_bad(**change))


def test_slices_longer_than_the_bitmask_are_refused():
    case = make_case([40], [0])
    case["bitmask"] = case["bitmask"][:, :1]
    with pytest.raises(ValueError, match="bitmask's 1 words"):
        check_inputs(**case)


def test_the_kernel_path_checks_before_it_needs_a_gpu():
    with pytest.raises(ValueError, match="head_dim in"):
        tree_attention_cupy(**make_case([3], [2], head_dim=8))
    case = make_case([3], [2], head_dim=64)
    if _cupy.unavailable(case["q"].device):
        with pytest.raises(RuntimeError, match="cannot run"):
            tree_attention_cupy(**case)


# ---- the CUDA kernel (runs on a GPU machine with CuPy; skipped elsewhere) ----

needs_gpu = pytest.mark.skipif(_cupy.unavailable("cuda") is not None,
                               reason=f"CuPy kernel: {_cupy.unavailable('cuda')}")
# The kernel accumulates in fp32 from the same rounded inputs; its error is the output's
# rounding: 2^-11 (fp16) or 2^-8 (bf16) of |out| <= ~4. Judged against a float64 reference.
KERNEL_ATOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-4}
SHAPES = [  # lens, prefixes, kv heads, group, head_dim
    ([16], [512], 8, 4, 128),
    ([64, 3, 17, 1], [0, 100, 33, 700], 2, 2, 64),
    ([33, 64, 1, 40, 5, 70], [31, 32, 0, 1, 300, 64], 2, 8, 128),  # G = 8: 4 queries per tile
    ([20, 7], [45, 9], 1, 64, 64),  # MQA, G = 64 > 32 rows: two passes per block
    ([1], [0], 1, 1, 128),  # a lone root: it sees only itself
]


@needs_gpu
@pytest.mark.parametrize("dtype", list(KERNEL_ATOL), ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"B{len(s[0])}-Hk{s[2]}-G{s[3]}-D{s[4]}")
def test_kernel_matches_the_reference(dtype, shape):
    lens, prefixes, num_kv_heads, group, head_dim = shape
    case = make_case(lens, prefixes, num_kv_heads, group, head_dim, dtype, seed=len(lens), device="cuda")
    want = tree_attention_reference(**{k: t.cpu().double() if t.is_floating_point() else t.cpu()
                                       for k, t in case.items()})
    # Slots no query may see are poisoned: the kernel must not read them into any sum.
    for r, row in enumerate(case["request_rows"].tolist()):
        case["k_cache"][row, :, prefixes[r] + lens[r]:] = float("nan")
        case["v_cache"][row, :, prefixes[r] + lens[r]:] = float("nan")
    got = tree_attention_cupy(**case, max_len=max(lens))
    assert got.dtype == dtype and got.shape == case["q"].shape
    torch.testing.assert_close(got.double().cpu(), want, atol=KERNEL_ATOL[dtype], rtol=0)
    # Against the same-dtype reference too, with both errors allowed for.
    same = tree_attention_reference(**{k: t.nan_to_num() if t.is_floating_point() else t for k, t in case.items()})
    torch.testing.assert_close(got, same, atol=2 * KERNEL_ATOL[dtype], rtol=0)


@needs_gpu
def test_kernel_on_a_strided_cache_and_a_flipped_bit():
    """A layer view of a 5-D cache (the KVCache layout) cut to fewer slots; one bit flipped
    moves exactly one query, as in the reference."""
    case = make_case([9, 30], [50, 2], 2, 2, 64, torch.float16, seed=7, device="cuda")
    for name in ("k_cache", "v_cache"):
        full = torch.randn((3, *case[name].shape[:2], 80, 64), device="cuda", dtype=torch.float16)
        full[1, :, :, :case[name].shape[2]] = case[name]
        case[name] = full[1, :, :, :60]  # not contiguous: slots cut from 80 to 60
    want = tree_attention_reference(**{k: t.cpu().double() if t.is_floating_point() else t.cpu()
                                       for k, t in case.items()})
    torch.testing.assert_close(tree_attention_cupy(**case).double().cpu(), want, atol=5e-3, rtol=0)
    case["bitmask"][9 + 29, 0] ^= 1  # token 29 of request 1 loses (or gains) the root
    after = tree_attention_cupy(**case)
    want2 = tree_attention_reference(**{k: t.cpu().double() if t.is_floating_point() else t.cpu()
                                        for k, t in case.items()})
    torch.testing.assert_close(after.double().cpu(), want2, atol=5e-3, rtol=0)
    assert (want2[38] - want[38]).abs().max() > 1e-2 and torch.equal(want2[:38], want[:38])


def test_consecutive_rows_take_a_view_and_agree_with_a_gather():
    """The executor's rows are consecutive: the plan then slices the cache instead of gathering
    it. Both ways give the same result (the same rows listed out of order force the gather)."""
    from specgrove.kernels.tree_attention import padded_plan, attend_padded

    torch.manual_seed(0)
    k, v = torch.randn(6, 2, 40, 8), torch.randn(6, 2, 40, 8)
    q = torch.randn(7, 4, 8)
    starts = torch.tensor([0, 3, 7], dtype=torch.int32)
    prefix = torch.tensor([5, 9], dtype=torch.int32)
    bits = torch.tensor([[1], [3], [5], [1], [3], [7], [11]], dtype=torch.int32)
    view_plan = padded_plan(starts, prefix, torch.tensor([2, 3], dtype=torch.int32), bits, 7)
    gather_plan = padded_plan(starts, prefix, torch.tensor([3, 2], dtype=torch.int32), bits, 7)
    assert view_plan.groups[0].first_row == 2 and gather_plan.groups[0].first_row is None
    k2, v2 = k.clone(), v.clone()
    k2[[2, 3]], v2[[2, 3]] = k[[3, 2]], v[[3, 2]]  # swap the two rows, so the gather reads the same data
    torch.testing.assert_close(attend_padded(view_plan, q, k, v), attend_padded(gather_plan, q, k2, v2))


@pytest.mark.parametrize("lengths", [[1, 1, 1, 9], [5, 1, 1, 1, 1], [1, 40, 1], [3, 3, 1, 1, 1, 2], [1], [7]])
def test_a_batch_with_few_trees_is_attended_in_two_groups_with_the_same_result(lengths):
    """Roots of every request in one call, the few trees in another: nothing padded to the
    largest tree, and the same outputs as the one padded call (forced by listing every row)."""
    from specgrove.kernels.tree_attention import attend_padded, padded_plan

    torch.manual_seed(1)
    B, heads, dim = len(lengths), 2, 8
    starts = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    T = int(starts[-1])
    prefix = torch.tensor([5 + 3 * b for b in range(B)], dtype=torch.int32)
    k, v = torch.randn(B + 2, heads, 128, dim), torch.randn(B + 2, heads, 128, dim)
    q = torch.randn(T, 2 * heads, dim)
    # Each token sees the root and itself (a star), as bits over as many words as needed.
    words = (max(lengths) + 31) // 32
    bits = torch.zeros(T, words, dtype=torch.int64)
    for b in range(B):
        for j in range(lengths[b]):
            for bit in {0, j}:
                bits[int(starts[b]) + j, bit // 32] |= 1 << (bit % 32)
    bits = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32)
    rows = torch.arange(1, B + 1, dtype=torch.int32)
    plan = padded_plan(starts, prefix, rows, bits, T)
    few = sum(n > 1 for n in lengths) <= B // 2 and max(lengths) > 1
    assert len(plan.groups) == (2 if few else 1)
    want = torch.cat([_brute_force_star(q, k, v, int(starts[b]), lengths[b], int(prefix[b]), b + 1) for b in range(B)])
    torch.testing.assert_close(attend_padded(plan, q, k, v), want, atol=1e-5, rtol=1e-5)


def _brute_force_star(q, k, v, start, n, prefix, row):
    """Request ``row``'s outputs where token j sees the prefix, the root and itself."""
    out = []
    for j in range(n):
        keys = list(range(prefix)) + sorted({prefix, prefix + j})
        qq = q[start + j]                                       # (Hq, D)
        kk, vv = k[row][:, keys], v[row][:, keys]               # (Hk, K, D)
        group = qq.shape[0] // kk.shape[0]
        kk, vv = kk.repeat_interleave(group, 0), vv.repeat_interleave(group, 0)
        w = torch.softmax((qq[:, None, :] * kk).sum(-1) / qq.shape[-1] ** 0.5, dim=-1)
        out.append((w[..., None] * vv).sum(1))
    return torch.stack(out)
