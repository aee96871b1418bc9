"""bench.json, bench.md and speedup.png from aggregated benchmark rows."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def write_report(out: Path, rows: list[dict], config: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"config": config, "device": machine(), "rows": rows}, indent=2))
    lines = [
        f"# specgrove bench: pair `{config['pair']}`, {config['num_prompts']} prompts, "
        f"{config['max_new_tokens']} new tokens, budget {config['budget']}, {config['batch_budget']}",
        "",
        f"Device: {machine()}. Placement: {config.get('placement', 'tp=1, draft=same')}. Medians of "
        f"{config['repeats']} interleaved repeats after a warm-up; "
        "speed-up = tokens/s over `ar`'s at the same batch size. tau = tokens per target forward.",
        "",
        "| batch | method | tau | tokens/s | speed-up vs ar | nodes/step | draft ms/step | verify ms/step | step ms | = ar |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same = f"{r['outputs_equal_ar']}/{r['num_prompts']}" if "outputs_equal_ar" in r else ""
        lines.append(
            f"| {r['batch_size']} | {r['method']} | {r['tau']:.2f} | {r['tokens_per_s']:.1f} | "
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
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    plot_speedup(out / "speedup.png", rows, config)


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
        xs, ys = [], []
        for i, b in enumerate(batches):
            row = next((r for r in rows if r["batch_size"] == b and r["method"] == m), None)
            if row:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(row["speedup_vs_ar"])
        ax.bar(xs, ys, width, label=m)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("tokens/s relative to ar")
    ax.set_title(f"specgrove bench ({config['pair']}, budget {config['budget']}, {machine()})", fontsize=9)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
