"""GPU microbenchmark of ragged tree attention (``specgrove.kernels.tree_attention``).

Three ways to attend a verification batch of B trees over a cached prefix, per layer call:

* ``kernel``: the ragged CUDA kernel (no padding, the bitmask read in the kernel);
* ``sdpa_dense``: torch SDPA on the batch padded to the largest tree, with a dense boolean
  mask built beforehand (what the executor did before: the mask is built once per forward and
  shared by all layers, so its cost is not counted here, nor is any pad or un-pad);
* ``reference``: the padded torch reference (mask from the bitmask, gather, SDPA, un-pad).

Uniform trees of 16, 32 and 64 nodes and skewed batches (one 64-node tree, the rest 4 nodes:
where padding costs most), batch 1, 4, 16, fp16 and bf16, 32 q heads over 8 kv heads, D = 128.
Variants run interleaved after a warm-up and are timed with CUDA events; medians over
repeats. The kernel's max abs error against an fp32 reference is reported beside its time.

    .venv/bin/python benchmarks/kernels.py --out DIR [--device cuda] [--repeats N] [--quick]

Writes DIR/kernels.json, DIR/kernels.md and DIR/kernels.png (if matplotlib imports). Without
a CUDA device it says so and exits 2; ``--device cpu`` times the two torch variants only
(``--quick``: tiny sizes, to smoke-test the script).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from specgrove.kernels import _cupy
from specgrove.kernels.tree_attention import tree_attention_cupy, tree_attention_reference
from specgrove.kernels.tree_layout import tree_layout_reference

FULL = dict(trees=(16, 32, 64), batches=(1, 4, 16), prefix=512, q_heads=32, kv_heads=8, head_dim=128,
            dtypes=("float16", "bfloat16"), skew=(64, 4))
QUICK = dict(trees=(4, 8), batches=(1, 3), prefix=16, q_heads=4, kv_heads=2, head_dim=64,
             dtypes=("float32",), skew=(8, 2))


def make_batch(sizes, prefix, cfg, dtype, device, rng):
    """Random trees of the given sizes (parent of node i uniform in [0, i)) over a prefix each;
    the cache rows are 0..B-1, as the executor keeps its active rows."""
    parents = np.concatenate([[-1] + [int(rng.integers(0, i)) for i in range(1, n)] for n in sizes])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    i32 = lambda a: torch.tensor(np.asarray(a), dtype=torch.int32, device=device)  # noqa: E731
    batch = len(sizes)
    layout = tree_layout_reference(i32(parents), i32(starts), i32([prefix] * batch), i32(range(batch)),
                                   max_len=max(sizes))
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**31)))
    cache = (batch, cfg["kv_heads"], prefix + max(sizes) + 8, cfg["head_dim"])
    rand = lambda *shape: torch.randn(shape, generator=gen, device=device).to(dtype)  # noqa: E731
    return dict(q=rand(int(starts[-1]), cfg["q_heads"], cfg["head_dim"]), k_cache=rand(*cache),
                v_cache=rand(*cache), query_starts=layout.query_starts, prefix_lens=layout.prefix_lens,
                request_rows=layout.request_rows, bitmask=layout.bitmask), max(sizes)


def dense_inputs(args, max_len):
    """The padded batch and dense mask of the old path, built outside the timed region."""
    q, starts, prefix = args["q"], args["query_starts"].tolist(), int(args["prefix_lens"][0])
    batch, num_keys = len(starts) - 1, prefix + max_len
    qp = q.new_zeros(batch, max_len, *q.shape[1:])
    mask = torch.zeros(batch, 1, max_len, num_keys, dtype=torch.bool, device=q.device)
    mask[..., :prefix] = True
    bits = args["bitmask"].long() & 0xFFFFFFFF
    j = torch.arange(max_len, device=q.device)
    for b in range(batch):
        n = starts[b + 1] - starts[b]
        qp[b, :n] = q[starts[b]:starts[b + 1]]
        words = bits[starts[b]:starts[b + 1]]
        mask[b, 0, :n, prefix:prefix + max_len] = (words[:, j // 32] >> (j % 32)) & 1 == 1
        mask[b, 0, n:, 0] = True  # padding rows see one key: no NaN
    rows = slice(0, batch)  # rows 0..B-1: a view, no gather, as the old executor sliced
    return qp.transpose(1, 2), args["k_cache"][rows, :, :num_keys], args["v_cache"][rows, :, :num_keys], mask


def timer(device):
    if device.type == "cuda":
        def run(fn, inner):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / inner
    else:
        def run(fn, inner):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            return (time.perf_counter() - t0) * 1e3 / inner
    return run


def bench_case(sizes, cfg, dtype_name, device, repeats, inner, use_kernel, rng):
    dtype = getattr(torch, dtype_name)
    args, max_len = make_batch(sizes, cfg["prefix"], cfg, dtype, device, rng)
    num_keys = cfg["prefix"] + max_len
    qp, kd, vd, mask = dense_inputs(args, max_len)
    gqa = cfg["q_heads"] != cfg["kv_heads"]
    variants = {
        "sdpa_dense": lambda: F.scaled_dot_product_attention(qp, kd, vd, attn_mask=mask, enable_gqa=gqa),
        "reference": lambda: tree_attention_reference(**args, max_len=max_len, num_keys=num_keys),
    }
    if use_kernel:
        variants = {"kernel": lambda: tree_attention_cupy(**args, max_len=max_len), **variants}
    # Correctness first: each variant against an fp32 reference on the same inputs.
    exact = tree_attention_reference(**{k: t.float() if t.is_floating_point() else t for k, t in args.items()})
    errors = {"reference": (variants["reference"]().float() - exact).abs().max().item()}
    if use_kernel:
        errors["kernel"] = (variants["kernel"]().float() - exact).abs().max().item()
    run = timer(device)
    for fn in variants.values():  # warm-up: compile, allocator, caches
        run(fn, inner)
    times = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved, so drift hits every variant alike
        for name, fn in variants.items():
            times[name].append(run(fn, inner))
    med = {name: statistics.median(t) for name, t in times.items()}
    padded = len(sizes) * max_len
    row = dict(sizes=list(sizes), batch=len(sizes), max_tree=max_len, tokens=sum(sizes),
               padding=round(1 - sum(sizes) / padded, 3), dtype=dtype_name, ms=med, max_abs_err=errors)
    if use_kernel:
        row["speedup_vs_sdpa_dense"] = med["sdpa_dense"] / med["kernel"]
        row["speedup_vs_reference"] = med["reference"] / med["kernel"]
    return row


def cases(cfg):
    big, small = cfg["skew"]
    for batch in cfg["batches"]:
        for n in cfg["trees"]:
            yield "uniform", [n] * batch
        if batch > 1:
            yield "skewed", [big] + [small] * (batch - 1)


def write_markdown(path, report, use_kernel):
    cols = ["kind", "dtype", "batch", "trees", "padding"] + [f"{v} ms" for v in report["variants"]]
    if use_kernel:
        cols += ["sdpa/kernel", "ref/kernel", "kernel err"]
    lines = [f"# Ragged tree attention on {report['device_name']}", "",
             f"Prefix {report['config']['prefix']}, {report['config']['q_heads']} q heads over "
             f"{report['config']['kv_heads']} kv heads, D = {report['config']['head_dim']}; medians of "
             f"{report['repeats']} interleaved repeats of {report['inner']} calls. `sdpa_dense` excludes "
             "building its mask and padding (done once per forward before); `kernel err` is the max "
             "abs error against an fp32 reference.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in report["rows"]:
        trees = f"{r['sizes'][0]}" if len(set(r["sizes"])) == 1 else f"{r['sizes'][0]}+{r['sizes'][1]}x{r['batch'] - 1}"
        cells = [r["kind"], r["dtype"], str(r["batch"]), trees, f"{r['padding']:.0%}"]
        cells += [f"{r['ms'][v]:.4f}" for v in report["variants"]]
        if use_kernel:
            cells += [f"{r['speedup_vs_sdpa_dense']:.2f}x", f"{r['speedup_vs_reference']:.2f}x",
                      f"{r['max_abs_err']['kernel']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", report["plot_note"], ""]
    path.write_text("\n".join(lines))


def plot(path, report) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"No PNG: matplotlib does not import ({e})."
    rows = report["rows"]
    short = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}
    labels = [f"{r['kind'][0]} {short[r['dtype']]} B{r['batch']} n{r['max_tree']}" for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(report["variants"])
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(rows)), 4.5))
    for i, v in enumerate(report["variants"]):
        ax.bar(x + (i - (len(report["variants"]) - 1) / 2) * width, [r["ms"][v] for r in rows], width, label=v)
    ax.set_xticks(x, labels, rotation=70, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per call (median)")
    ax.set_title(f"Tree attention, prefix {report['config']['prefix']}, {report['device_name']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"Plot: `{path.name}` (u = uniform, s = skewed; log scale)."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=None, help="calls per timed measurement")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA device (torch.cuda.is_available() is False); use --device cpu --quick "
              "to time the torch variants only", file=sys.stderr)
        return 2
    reason = _cupy.unavailable(device)
    use_kernel = reason is None
    if device.type == "cuda" and not use_kernel:
        print(f"the CuPy kernel cannot run ({reason}): timing the torch variants only", file=sys.stderr)
    cfg = QUICK if a.quick else FULL
    inner = a.inner or (20 if device.type == "cuda" else 3)
    rng = np.random.default_rng(a.seed)
    rows = []
    for dtype_name in cfg["dtypes"]:
        for kind, sizes in cases(cfg):
            row = bench_case(sizes, cfg, dtype_name, device, a.repeats, inner, use_kernel, rng)
            rows.append({"kind": kind, **row})
            print(json.dumps({k: rows[-1][k] for k in ("kind", "dtype", "batch", "max_tree", "ms")}), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report = dict(device=str(device), device_name=name, torch=torch.__version__, config=cfg,
                  repeats=a.repeats, inner=inner, variants=list(rows[0]["ms"]), kernel_skipped=reason,
                  rows=rows)
    a.out.mkdir(parents=True, exist_ok=True)
    report["plot_note"] = plot(a.out / "kernels.png", report)
    (a.out / "kernels.json").write_text(json.dumps(report, indent=1))
    write_markdown(a.out / "kernels.md", report, use_kernel)
    print(f"wrote {a.out}/kernels.json, kernels.md" + (", kernels.png" if "No PNG" not in report["plot_note"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
