"""The lean runtime's matrix products: plain ``F.linear`` (MKL) against oneDNN's packed GEMM.

Two parts, one run:

* ``shapes``: every distinct projection of the demo pair, for 1, 2, 3, 4, 8 and 16 rows,
  microseconds per product with ``F.linear`` and with the packed weight (interleaved, medians).
  This is the table behind ``runtime.gemm``'s thresholds.
* ``engine``: the bench's runs (fresh engine per run, the held-out code prompts, greedy,
  budget 16) with ``--gemm torch`` and ``--gemm auto`` interleaved, per method and batch size;
  the greedy outputs of both must equal ``ar``'s under ``torch``.

    .venv/bin/python benchmarks/gemm.py [--batch-sizes 1,4,16] [--repeats 3] [--out DIR]

Writes DIR/{gemm.json, gemm.md, gemm.png} (default benchmarks/results/gemm-cpu).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from specgrove.executor.bench import load_prompts, run_engine  # noqa: E402
from specgrove.executor.loading import load_pair  # noqa: E402
from specgrove.executor.methods import method_options  # noqa: E402
from specgrove.executor.runtime import from_hf  # noqa: E402
from specgrove.executor.runtime.gemm import PACK_MIN_ELEMENTS, PACK_MIN_ROWS, onednn_available  # noqa: E402
from specgrove.trace import TraceWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = (1, 2, 3, 4, 8, 16)
GEMMS = ("torch", "auto")


def _time_us(fn, n: int) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


@torch.inference_mode()
def shape_table(pair) -> list[dict]:
    shapes = {}
    for role, model in (("target", pair.target), ("draft", pair.draft)):
        lean = from_hf(model, 1, 2, gemm="torch")
        for layer in lean.layers:
            for name, w in layer.items():
                if isinstance(w, torch.Tensor) and w.dim() == 2:
                    shapes.setdefault((role, tuple(w.shape)), name)
        shapes.setdefault((role, tuple(lean.lm_head.shape)), "lm_head")
    rows = []
    for (role, (out_f, in_f)), name in tqdm(shapes.items(), desc="shapes"):
        w = torch.randn(out_f, in_f).t().contiguous().t()  # column-major, as the runtime keeps it
        packed = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), None)
        for m in ROWS:
            x = torch.randn(m, in_f)
            plain = _time_us(lambda: F.linear(x, w), 200)
            onednn = _time_us(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""), 200)
            rows.append({"model": role, "weight": name, "out": out_f, "in": in_f, "rows": m,
                         "f_linear_us": round(plain, 2), "packed_us": round(onednn, 2),
                         "runtime_uses": "packed" if w.numel() >= PACK_MIN_ELEMENTS and m >= PACK_MIN_ROWS else "F.linear"})
    return rows


def engine_runs(pair, methods, batches, repeats, max_new) -> list[dict]:
    prompts = load_prompts(ROOT / "benchmarks/prompts/code.jsonl")
    ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    text = "\n".join(p["text"] for p in prompts)
    options = {m: method_options(m, pair, text) for m in methods}
    runs = []
    bar = tqdm(total=len(batches) * repeats * len(methods) * len(GEMMS), desc="engine")
    for b in batches:
        for m in methods:  # warm-up, not recorded
            for g in GEMMS:
                run_engine(pair, m, options[m], ids[:b], b, 8, 16, "uniform", TraceWriter(None), gemm=g)
        for rep in range(repeats):
            for m in methods:
                for g in GEMMS:
                    stats, outs = run_engine(pair, m, options[m], ids, b, max_new, 16, "uniform", TraceWriter(None), gemm=g)
                    runs.append({"batch": b, "method": m, "gemm": g, "repeat": rep,
                                 "tokens_per_s": stats["tokens_per_s"], "tau": stats["tau"], "outputs": outs})
                    bar.update(1)
    bar.close()
    return runs


def summarize(runs) -> list[dict]:
    ref = {r["batch"]: r["outputs"] for r in runs if r["method"] == "ar" and r["gemm"] == "torch" and r["repeat"] == 0}
    rows = []
    for (b, m) in dict.fromkeys((r["batch"], r["method"]) for r in runs):
        row = {"batch": b, "method": m}
        for g in GEMMS:
            mine = [r for r in runs if r["batch"] == b and r["method"] == m and r["gemm"] == g]
            row[f"{g}_tokens_per_s"] = round(statistics.median(r["tokens_per_s"] for r in mine), 1)
            row[f"{g}_range"] = [round(min(r["tokens_per_s"] for r in mine), 1), round(max(r["tokens_per_s"] for r in mine), 1)]
            row[f"{g}_equals_ar"] = all(r["outputs"] == ref[b] for r in mine) if b in ref else None
        row["speedup"] = round(row["auto_tokens_per_s"] / row["torch_tokens_per_s"], 3)
        rows.append(row)
    for row in rows:  # each gemm's method against its own ar, as bench reports it
        for g in GEMMS:
            ar = next(x for x in rows if x["batch"] == row["batch"] and x["method"] == "ar")
            row[f"{g}_vs_ar"] = round(row[f"{g}_tokens_per_s"] / ar[f"{g}_tokens_per_s"], 3)
    return rows


def write(out: Path, shapes, rows, config) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemm.json").write_text(json.dumps({"config": config, "shapes": shapes, "engine": rows}, indent=1) + "\n")
    md = [f"# Matrix products: `F.linear` (MKL) against oneDNN's packed GEMM, {config['machine']}", "",
          f"torch {config['torch']}, {config['threads']} threads. `runtime.gemm` packs a weight of at least "
          f"{PACK_MIN_ELEMENTS:,} elements and uses it from {PACK_MIN_ROWS} rows. Command: "
          "`.venv/bin/python benchmarks/gemm.py`.", "",
          "## Per product (microseconds, median of 5 x 200 calls)", "",
          "| model | weight | out x in | " + " | ".join(f"{m} row{'s' if m > 1 else ''}" for m in ROWS) + " |",
          "|---|---|---|" + "---:|" * len(ROWS)]
    for key in dict.fromkeys((s["model"], s["weight"], s["out"], s["in"]) for s in shapes):
        cells = []
        for m in ROWS:
            s = next(s for s in shapes if (s["model"], s["weight"], s["out"], s["in"]) == key and s["rows"] == m)
            mark = "**" if s["runtime_uses"] == "packed" else ""
            cells.append(f"{s['f_linear_us']:.0f} / {mark}{s['packed_us']:.0f}{mark}")
        md.append(f"| {key[0]} | {key[1]} | {key[2]} x {key[3]} | " + " | ".join(cells) + " |")
    md += ["", "Cells: F.linear / packed; bold where the runtime takes the packed path.", "",
           f"## Engine (tokens/s, medians of {config['repeats']} interleaved repeats after a warm-up; "
           f"{config['num_prompts']} held-out code prompts x {config['max_new_tokens']} tokens, greedy, budget 16)", "",
           "| batch | method | torch | auto | auto / torch | x ar (torch) | x ar (auto) | = ar |",
           "|---:|---|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        same = "yes" if r["torch_equals_ar"] and r["auto_equals_ar"] else "NO"
        md.append(f"| {r['batch']} | {r['method']} | {r['torch_tokens_per_s']:.0f} | {r['auto_tokens_per_s']:.0f} | "
                  f"{r['speedup']:.2f} | {r['torch_vs_ar']:.2f} | {r['auto_vs_ar']:.2f} | {same} |")
    (out / "gemm.md").write_text("\n".join(md) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in dict.fromkeys((s["model"], s["weight"], s["out"], s["in"]) for s in shapes):
        mine = [s for s in shapes if (s["model"], s["weight"], s["out"], s["in"]) == key]
        line, = axes[0].plot(ROWS, [s["f_linear_us"] for s in mine], "-", label=f"{key[0]} {key[1]} {key[2]}x{key[3]}")
        axes[0].plot(ROWS, [s["packed_us"] for s in mine], "--", color=line.get_color())
    axes[0].set(xlabel="rows", ylabel="us per product", title="F.linear (solid) vs packed oneDNN (dashed)")
    axes[0].legend(fontsize=7)
    labels = [f"b{r['batch']} {r['method']}" for r in rows]
    axes[1].barh(labels, [r["speedup"] for r in rows])
    axes[1].axvline(1.0, color="k", lw=0.8)
    axes[1].set(xlabel="tokens/s, auto / torch", title="engine")
    axes[1].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "gemm.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--methods", default="ar,chain,sequoia,dynamic,dynamic-cost")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gemm-cpu"))
    args = ap.parse_args()
    if not onednn_available():
        raise SystemExit("gemm.py: this torch build has no oneDNN (torch.backends.mkldnn); nothing to compare")
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if "ar" not in methods:
        raise SystemExit("gemm.py: --methods must include ar (the reference output and speed)")
    pair = load_pair()
    shapes = shape_table(pair)
    runs = engine_runs(pair, methods, [int(b) for b in args.batch_sizes.split(",")], args.repeats, args.max_new_tokens)
    config = {"machine": f"{platform.machine()} CPU", "torch": torch.__version__, "threads": args.threads,
              "repeats": args.repeats, "max_new_tokens": args.max_new_tokens, "methods": methods,
              "num_prompts": len(load_prompts(ROOT / "benchmarks/prompts/code.jsonl"))}
    write(Path(args.out), shapes, summarize(runs), config)
    print((Path(args.out) / "gemm.md").read_text())


if __name__ == "__main__":
    main()
