"""bench.json, bench.md and speedup.png from aggregated benchmark rows."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from specgrove.results import atomic_path, atomic_write_text, write_manifest

# What one bench run writes; any of them in --out means another run is there.
BENCH_FILES = ("bench.json", "bench.md", "speedup.png", "manifest.json")


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def spread_cell(row: dict) -> str:
    """tokens/s min-max over the repeats, or "single run"."""
    if row.get("tokens_per_s_spread") is None:
        return "single run"
    return f"{row['tokens_per_s_min']:.1f}-{row['tokens_per_s_max']:.1f}"


SPEC_DEPTHS = 6  # acceptance by draft depth shown in bench.md (bench.json has every depth)


def spec_table(rows: list[dict]) -> list[str]:
    """bench.md's speculative-decoding table (vLLM's metrics): per method and batch, the mean
    accepted length and the acceptance rate at draft depths 1..6; empty without such rows."""
    spec = [r for r in rows if r.get("acceptance_by_depth")]
    if not spec:
        return []

    def cell(value) -> str:
        return "" if value is None else f"{value:.2f}"

    out = ["", "Speculation: tree nodes accepted per request-step (mean accepted), accepted over drafted "
           f"nodes overall and at draft depths 1-{SPEC_DEPTHS}, draft and verify ms per emitted token.", "",
           "| batch | method | mean accepted | accept rate | "
           + " | ".join(f"d{d}" for d in range(1, SPEC_DEPTHS + 1)) + " | draft ms/tok | verify ms/tok |",
           "|---:|---|---:|---:|" + "---:|" * SPEC_DEPTHS + "---:|---:|"]
    for r in spec:
        by_depth = list(r["acceptance_by_depth"][:SPEC_DEPTHS]) + [None] * SPEC_DEPTHS
        out.append(f"| {r['batch_size']} | {r['method']} | {cell(r.get('mean_accepted_len'))} | "
                   f"{cell(r.get('draft_acceptance_rate'))} | "
                   + " | ".join(cell(v) for v in by_depth[:SPEC_DEPTHS])
                   + f" | {cell(r.get('draft_ms_per_token'))} | {cell(r.get('verify_ms_per_token'))} |")
    return out


def write_report(out: Path, rows: list[dict], config: dict, command: str | None = None) -> None:
    """bench.json, bench.md, speedup.png and manifest.json in ``out``, each written atomically
    (a temporary file in ``out``, then renamed), so no reader sees half a report."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# specgrove bench: pair `{config['pair']}`, {config['num_prompts']} prompts, "
        f"{config['max_new_tokens']} new tokens, budget {config['budget']}, {config['batch_budget']}"
        + "".join(f", {k} {config[k]}" for k in ("topk", "depth") if config.get(k) is not None),
        "",
        f"Device: {machine()}. Placement: {config.get('placement', 'tp=1, draft=same')}. "
        f"GEMM: {config.get('gemm', 'auto')}. CUDA graphs: {config.get('cuda_graphs', 'auto')}. Medians of "
        f"{config['repeats']} interleaved repeats after a warm-up; "
        "speed-up = tokens/s over `ar`'s at the same batch size; tokens/s range = min-max over the "
        "repeats. tau = tokens per target forward.",
        "",
    ]
    notes = list(config.get("notes", []))
    if config["repeats"] == 1:
        notes.append("--repeats 1: every row is a single run, with no spread to judge its noise by")
    if notes:
        lines += ["**Warning: read these numbers with care.**", ""] + [f"* {n}" for n in notes] + [""]
    lines += [
        "| batch | method | tau | tokens/s | tokens/s range | speed-up vs ar | nodes/step | draft ms/step | "
        "verify ms/step | step ms | = ar |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same = f"{r['outputs_equal_ar']}/{r['num_prompts']}" if "outputs_equal_ar" in r else ""
        lines.append(
            f"| {r['batch_size']} | {r['method']} | {r['tau']:.2f} | {r['tokens_per_s']:.1f} | {spread_cell(r)} | "
            f"{r['speedup_vs_ar']:.2f} | {r['mean_tree_size']:.1f} | {r['draft_ms_per_step']:.2f} | "
            f"{r['verify_ms_per_step']:.2f} | {r['wall_ms_per_step']:.2f} | {same} |"
        )
    wired = [r for r in rows if "wire_bytes_per_step" in r]
    if wired:
        lines += ["", "Separate draft: bytes on the wire per step (both ways, admissions apart), per tree node, "
                  "and the share of the draft's time hidden behind verification.", "",
                  "| batch | method | bytes/step | bytes/node | overlap |", "|---:|---|---:|---:|---:|"]
        lines += [f"| {r['batch_size']} | {r['method']} | {r['wire_bytes_per_step']:.0f} | "
                  f"{r['wire_bytes_per_node']:.1f} | {r['overlap_fraction']:.2f} |" for r in wired]
    graphed = [r for r in rows if "cuda_graphs" in r]
    if graphed:
        lines += ["", "CUDA graphs (`runtime.graphs`), medians over repeats: graphs captured when each engine "
                  "was built (before its clock started) and the seconds that took, then the dense forwards "
                  "replayed and those that fit no bucket and ran eagerly.", "",
                  "| batch | method | captured | capture s | replays | eager |", "|---:|---|---:|---:|---:|---:|"]
        lines += [f"| {r['batch_size']} | {r['method']} | {r['cuda_graphs']['captured']:.0f} | "
                  f"{r['cuda_graphs']['capture_s']:.2f} | {r['cuda_graphs']['replays']:.0f} | "
                  f"{r['cuda_graphs']['eager']:.0f} |" for r in graphed]
    lines += spec_table(rows)
    # The plot first (the likeliest to fail: then nothing was replaced), bench.json (the marker
    # of a finished run) last.
    with atomic_path(out / "speedup.png") as tmp:
        plot_speedup(tmp, rows, config)
    atomic_write_text(out / "bench.md", "\n".join(lines) + "\n")
    write_manifest(out, command or "", config=config, seed=config.get("seed"), device=machine())
    # NaN stands where a number does not exist (no ar row, hf-assisted's draft time), as before.
    atomic_write_text(out / "bench.json", json.dumps({"config": config, "device": machine(), "rows": rows}, indent=2))


def plot_speedup(path: Path, rows: list[dict], config: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    batches = sorted({r["batch_size"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(batches) * len(methods) / 3, 4))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(batches):
            row = next((r for r in rows if r["batch_size"] == b and r["method"] == m), None)
            if row:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(row["speedup_vs_ar"])
                # Error bars: the min-max over repeats (none for a single run).
                lo.append(max(row["speedup_vs_ar"] - row.get("speedup_min", row["speedup_vs_ar"]), 0.0))
                hi.append(max(row.get("speedup_max", row["speedup_vs_ar"]) - row["speedup_vs_ar"], 0.0))
        ax.bar(xs, ys, width, label=m, yerr=np.nan_to_num(np.array([lo, hi])), capsize=2,
               error_kw={"elinewidth": 0.8})
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("tokens/s relative to ar\n(error bars: min-max over repeats)", fontsize=9)
    ax.set_title(f"specgrove bench ({config['pair']}, budget {config['budget']}, {machine()})", fontsize=9)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
