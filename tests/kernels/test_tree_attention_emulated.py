"""The CUDA tree-attention kernel's algorithm, checked on the CPU by emulation.

``tree_attention_cupy`` is run with CuPy's launch replaced by a capture: the grid, the block and
the exact argument tuple it would hand to the kernel. A numpy emulation of one thread block of
``tree_attention.cu`` (same constants, read from the source; same tiling, index math, pointer
arithmetic over the tensors' whole storage with their strides, bitmask test, online softmax and
hand-written fp16/bf16 conversions) then runs every block of that grid on those arguments, and
the output is compared with ``tree_attention_reference``. Every global read is bounds-checked
against its tensor's storage, slots no query may see (and the other layers of a 5-D cache) are
NaN, and each output element must be written exactly once.

This tests the algorithm and the Python launch glue, not the compiled code: the GPU test in
test_tree_attention.py does that on a GPU.
"""

import math
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="tree attention needs torch (the 'executor' extra)")

from specgrove.kernels import _cupy  # noqa: E402
from specgrove.kernels import tree_attention as ta  # noqa: E402

SOURCE = (Path(ta.__file__).parent / "tree_attention.cu").read_text()


def _const(pattern):
    match = re.search(pattern, SOURCE)
    assert match, f"{pattern!r} not found in tree_attention.cu"
    return match.groups()


KT = int(_const(r"constexpr int KT = (\d+);")[0])
NWARPS = int(_const(r"constexpr int NWARPS = (\d+);")[0])
NTHREADS = 32 * NWARPS
ROWS_F32, ROWS_16 = map(int, _const(r"ROWS = sizeof\(T\) == 4 \? (\d+) : (\d+);"))
KS = KT + 1


def kernel_params() -> list[str]:
    """The C types of the extern "C" kernels' parameters, in order (from the macro)."""
    macro = SOURCE[SOURCE.index("#define TREE_ATTN_KERNEL"):]
    params = macro[macro.index("NAME(") + 5:macro.index(")", macro.index("NAME("))]
    params = params.replace("\\", " ")
    return [" ".join(p.split()[:-1]) for p in params.split(",")]


# ---------------------------------------------------------------- capture the launch


def capture(case, **kwargs):
    """What ``tree_attention_cupy`` launches: (function name, grid, block, args, out)."""
    seen = {}
    real = (_cupy.unavailable, _cupy.kernel, _cupy.launch)
    _cupy.unavailable = lambda device=None: None
    _cupy.kernel = lambda module, function: (module, function)
    _cupy.launch = lambda fn, grid, block, args, shared_mem=0: seen.update(
        fn=fn, grid=grid, block=block, args=args, shared_mem=shared_mem)
    try:
        out = ta.tree_attention_cupy(**case, **kwargs)
    finally:
        _cupy.unavailable, _cupy.kernel, _cupy.launch = real
    return seen, out


ELEMENT = {"f16": torch.int16, "bf16": torch.int16, "f32": torch.float32}


def check_types(name: str, args) -> None:
    """Each argument matches the kernel's C parameter type: pointers are tensors of the right
    element type, ints are numpy int32, long longs numpy int64, floats numpy float32."""
    tag = name.split("_")[2]
    params = kernel_params()
    assert len(args) == len(params), (len(args), params)
    for i, (ctype, arg) in enumerate(zip(params, args)):
        if ctype.endswith("*"):
            assert isinstance(arg, torch.Tensor), (i, ctype, type(arg))
            want = {"const T*": ELEMENT[tag], "T*": ELEMENT[tag], "const int*": torch.int32}[ctype]
            assert arg.dtype == want, (i, ctype, arg.dtype)
        else:
            want = {"int": np.int32, "long long": np.int64, "float": np.float32}[ctype]
            assert type(arg) is want, (i, ctype, type(arg))


# ---------------------------------------------------------------- device memory and conversions


class Pointer:
    """A kernel pointer: the tensor's whole storage as a flat numpy array, and an offset."""

    def __init__(self, t: torch.Tensor):
        flat = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0,
                                                  (t.untyped_storage().nbytes() // t.element_size(),))
        self.mem = flat.numpy()
        self.base = t.storage_offset()

    def index(self, offset):
        idx = self.base + np.asarray(offset, dtype=np.int64)
        assert (idx >= 0).all() and (idx < self.mem.size).all(), "out-of-bounds access"
        return idx

    def read(self, offset):
        return self.mem[self.index(offset)]


def to_float(tag, raw):
    if tag == "f32":
        return raw.astype(np.float32)
    if tag == "f16":
        return raw.view(np.float16).astype(np.float32)
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def from_float(tag, x):
    """The kernel's from_float<T>: cvt.rn.f16.f32 (numpy's cast rounds to nearest even too), and
    the hand-written bf16 rounding, transcribed."""
    x = np.asarray(x, dtype=np.float32)
    if tag == "f32":
        return x
    if tag == "f16":
        return x.astype(np.float16).view(np.int16)
    u = x.view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return np.where(nan, np.uint32(0x7FC0), rounded).astype(np.uint16).view(np.int16)


# ---------------------------------------------------------------- the kernel, one block at a time


def emulate(fn, grid, block, args) -> np.ndarray:
    """Runs every block of the launch; returns how often each output element was written."""
    _, name = fn
    tag, D = name.split("_")[2], int(name.split("_d")[-1])
    assert block == (NTHREADS, 1, 1)
    (q, k, v, out, starts, prefixes, rows, bitmask, words, Hq, Hk, qtile,
     k_row, k_head, k_slot, v_row, v_head, v_slot, scale_log2) = args
    q, k, v, out, starts, prefixes, rows, bitmask = map(
        Pointer, (q, k, v, out, starts, prefixes, rows, bitmask))
    words, Hq, Hk, qtile = int(words), int(Hq), int(Hk), int(qtile)
    ROWS = ROWS_F32 if tag == "f32" else ROWS_16
    RPW, elem = ROWS // NWARPS, (4 if tag == "f32" else 2)
    # Static shared memory: Qs + Kt + Vs + Ps within 48 KiB.
    assert 4 * ROWS * D + 4 * D * KS + elem * KT * D + 4 * NWARPS * RPW * KT <= 48 * 1024
    assert D % 32 == 0 and D % 4 == 0 and KT == 32
    writes = np.zeros(out.mem.size, dtype=np.int64)
    lane = np.arange(32)
    neg_inf = np.float32(-np.inf)
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                request, kv_head = bz, by
                q0 = int(starts.read(request))
                n = int(starts.read(request + 1)) - q0
                t0 = bx * qtile
                if t0 >= n:
                    continue  # before any __syncthreads, for the whole block
                group = Hq // Hk
                num_q = min(qtile, n - t0)
                num_rows = num_q * group
                prefix = int(prefixes.read(request))
                num_keys = prefix + n
                row = int(rows.read(request))
                kb = row * int(k_row) + kv_head * int(k_head)
                vb = row * int(v_row) + kv_head * int(v_head)
                for base in range(0, num_rows, ROWS):
                    i = np.arange(ROWS * D)
                    r, d = base + i // D, i % D
                    ok = r < num_rows
                    token = q0 + t0 + r // group
                    head = kv_head * group + r % group
                    Qs = np.zeros(ROWS * D, dtype=np.float32)
                    Qs[ok] = to_float(tag, q.read(((token * Hq + head) * D + d)[ok])) * np.float32(scale_log2)
                    Qs = Qs.reshape(ROWS, D)
                    rr = base + np.arange(NWARPS)[:, None] * RPW + np.arange(RPW)[None, :]
                    valid = rr < num_rows
                    mask_row = (q0 + t0 + np.where(valid, rr // group, 0)) * words
                    m = np.full((NWARPS, RPW), neg_inf, dtype=np.float32)
                    l_ = np.zeros((NWARPS, RPW, 32), dtype=np.float32)
                    o = np.zeros((NWARPS, RPW, D), dtype=np.float32)  # o[r][i] is d = lane + 32 i
                    Ps = np.full((NWARPS, RPW, KT), np.nan, dtype=np.float32)  # uninitialised
                    for k0 in range(0, num_keys, KT):
                        i = np.arange(KT * D)
                        key, d = i // D, i % D
                        slot = k0 + key
                        inside = slot < num_keys
                        Kt = np.zeros(D * KS, dtype=np.float32)
                        Kt[(d * KS + key)[inside]] = to_float(tag, k.read(kb + (slot * int(k_slot) + d)[inside]))
                        Vs = np.broadcast_to(from_float(tag, 0.0), (KT * D,)).copy()
                        Vs[inside] = v.read(vb + (slot * int(v_slot) + d)[inside])
                        Ktl = Kt.reshape(D, KS)[:, lane]  # (D, 32): lane's key
                        vv = to_float(tag, Vs).reshape(KT, D)
                        keyl = k0 + lane
                        tree_tile = k0 + KT > prefix
                        for w in range(NWARPS):
                            s = Qs[w * RPW:(w + 1) * RPW] @ Ktl  # (RPW, 32) fp32
                            for r in range(RPW):
                                if not valid[w, r]:
                                    continue
                                visible = keyl < num_keys
                                if tree_tile:
                                    sel = visible & (keyl >= prefix)
                                    j = (keyl - prefix)[sel]
                                    word = bitmask.read(mask_row[w, r] + (j >> 5)).astype(np.int32)
                                    visible[sel] = ((word >> (j & 31)) & 1).astype(bool)
                                sc = np.where(visible, s[r], neg_inf)
                                m_new = np.float32(max(m[w, r], sc.max()))
                                corr = np.float32(1) if m_new == neg_inf else np.exp2(np.float32(m[w, r] - m_new))
                                p = np.zeros(32, dtype=np.float32)
                                p[visible] = np.exp2(sc[visible] - m_new)
                                m[w, r] = m_new
                                l_[w, r] = l_[w, r] * corr + p
                                o[w, r] *= corr
                                Ps[w, r] = p
                            for r in range(RPW):
                                if valid[w, r]:
                                    o[w, r] += Ps[w, r] @ vv
                    for w in range(NWARPS):
                        for r in range(RPW):
                            total = np.float32(l_[w, r].sum())
                            if not valid[w, r]:
                                continue
                            x = base + w * RPW + r
                            token, head = q0 + t0 + x // group, kv_head * group + x % group
                            inv = np.float32(1) / total if total > 0 else np.float32(0)
                            dst = out.index((token * Hq + head) * D + np.arange(D))
                            out.mem[dst] = from_float(tag, o[w, r] * inv)
                            writes[dst] += 1
    return writes[out.base:]


# ---------------------------------------------------------------- cases


def make_case(lens, prefixes, num_kv_heads, group, head_dim, dtype, seed, *, chain=False,
              layers=1, layer=0, cut=0, slack=5, spare_rows=2):
    """Random trees (or chains) over random prefixes; rows a random subset in random order.
    The cache is a layer view of a (layers, rows, Hk, max_len + cut, D) tensor cut to max_len
    slots (strided when layers > 1 or cut > 0); everything no query may see is NaN."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    num_tokens, words = int(starts[-1]), max(1, math.ceil(max(lens) / 32))
    bits = np.zeros((num_tokens, words), dtype=np.uint32)
    for r, n in enumerate(lens):
        anc = []
        for i in range(n):
            p = i - 1 if chain else (int(rng.integers(0, i)) if i else -1)
            anc.append((anc[p] if p >= 0 else 0) | (1 << i))
            for w in range(words):
                bits[starts[r] + i, w] = (anc[i] >> (32 * w)) & 0xFFFFFFFF
    num_rows = len(lens) + spare_rows
    rows = rng.permutation(num_rows)[:len(lens)]
    cache_len = max(p + n for p, n in zip(prefixes, lens)) + slack
    full_shape = (layers, num_rows, num_kv_heads, cache_len + cut, head_dim)
    k_full = torch.full(full_shape, float("nan"), dtype=dtype)
    v_full = torch.full(full_shape, float("nan"), dtype=dtype)
    k_cache, v_cache = k_full[layer, :, :, :cache_len], v_full[layer, :, :, :cache_len]
    for r, row in enumerate(rows):
        seen = prefixes[r] + lens[r]
        k_cache[row, :, :seen] = torch.randn(num_kv_heads, seen, head_dim, generator=gen).to(dtype)
        v_cache[row, :, :seen] = torch.randn(num_kv_heads, seen, head_dim, generator=gen).to(dtype)
    q = torch.randn(num_tokens, num_kv_heads * group, head_dim, generator=gen).to(dtype)
    i32 = lambda a: torch.tensor(np.asarray(a, dtype=np.int64).astype(np.int32))  # noqa: E731
    return dict(q=q, k_cache=k_cache, v_cache=v_cache, query_starts=i32(starts),
                prefix_lens=i32(prefixes), request_rows=i32(rows),
                bitmask=torch.from_numpy(bits.view(np.int32).copy()))


def reference(case, **kwargs):
    """The reference in float64, NaN slots zeroed (the reference's padded SDPA multiplies
    masked values by 0, which NaN would poison; no query sees them)."""
    return ta.tree_attention_reference(**{
        k: t.double().nan_to_num() if t.is_floating_point() else t for k, t in case.items()}, **kwargs)


ATOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-4}
CASES = [  # lens, prefixes, Hk, group, head_dim, dtype, extra
    ([70, 3, 33], [31, 0, 45], 2, 1, 64, torch.float16, {}),
    ([40, 1, 0, 17], [1, 64, 5, 33], 2, 2, 64, torch.bfloat16, {}),  # an empty slice exits
    ([35, 64], [3, 32], 1, 2, 64, torch.float32, {"chain": True}),  # bit 31 and word 1 of chains
    ([9, 30, 5], [50, 2, 0], 2, 2, 64, torch.float16, {"layers": 3, "layer": 1, "cut": 20}),
    ([20, 7], [45, 9], 1, 40, 64, torch.float32, {"layers": 2, "layer": 1, "cut": 3}),  # G > ROWS
    ([12, 5], [7, 0], 1, 8, 128, torch.bfloat16, {}),  # D = 128, 4 queries per tile
    ([1], [0], 1, 1, 64, torch.float16, {}),  # a lone root sees only itself
]


@pytest.mark.parametrize("lens, prefixes, hk, group, head_dim, dtype, extra", CASES,
                         ids=[f"{str(c[5])[6:]}-G{c[3]}-D{c[4]}-{len(c[0])}req" for c in CASES])
def test_emulated_kernel_matches_the_reference(lens, prefixes, hk, group, head_dim, dtype, extra):
    case = make_case(lens, prefixes, hk, group, head_dim, dtype, seed=len(lens) + group, **extra)
    seen, out = capture(case, max_len=max(lens) + 3)  # a larger max_len: extra blocks exit
    check_types(seen["fn"][1], seen["args"])
    assert seen["fn"] == ("tree_attention", f"tree_attn_{ta.KERNEL_DTYPES[dtype]}_d{head_dim}")
    assert seen["shared_mem"] == 0  # all shared memory is static
    with np.errstate(invalid="raise", divide="raise"):  # no inf - inf, no 0/0 anywhere
        writes = emulate(seen["fn"], seen["grid"], seen["block"], seen["args"])
    assert (writes[:out.numel()] == 1).all() and not writes[out.numel():].any()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), reference(case), atol=ATOL[dtype], rtol=0)


def test_rows_per_block_agree_with_the_source():
    assert ta.KERNEL_ROWS == {torch.float16: ROWS_16, torch.bfloat16: ROWS_16, torch.float32: ROWS_F32}
    assert ta.KERNEL_THREADS == NTHREADS


def test_bf16_rounding_matches_torch():
    """The kernel's hand-written float -> bf16 (round to nearest even, NaN kept) is torch's."""
    rng = np.random.default_rng(0)
    scaled = rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096)  # |x| < 3.4e38 mostly
    x = np.concatenate([scaled.clip(-3e38, 3e38).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.3895314e38, 3.4028235e38,
                                  1e-45, -1e-40, 1.00390625, 1.01171875], dtype=np.float32)])
    x = np.concatenate([x, rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    assert x.dtype == np.float32
    got = from_float("bf16", x)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy()
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.isnan(to_float("bf16", got[nan])).all()
