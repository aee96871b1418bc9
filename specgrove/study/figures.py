"""The study's static figures (matplotlib PNGs), each drawn from the rows its CSV holds."""

from __future__ import annotations

import math
from pathlib import Path

from specgrove.study.settings import DYNAMIC, METHODS

BASELINES = ("static", "sequoia", "chain", "ar")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(method: str) -> str:
    order = list(METHODS) + ["hf-assisted"]
    return f"C{order.index(method) if method in order else len(order)}"


def _bars(ax, groups: list, series: list[str], value, colors=None) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series; ``value(group,
    series)`` is the height or None (no bar)."""
    width = 0.8 / max(len(series), 1)
    for j, name in enumerate(series):
        xs, ys = [], []
        for i, g in enumerate(groups):
            v = value(g, name)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                xs.append(i + (j - (len(series) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=name, color=(colors or {}).get(name))
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])


def _grid(plt, nrows: int, ncols: int, w: float = 5.0, h: float = 3.4):
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def real_figure(rows: list[dict], path: Path, key: str, ylabel: str, reference: float | None) -> None:
    """Bars per method, grouped by batch size, one panel per (domain, temperature)."""
    plt = _plt()
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    temps = list(dict.fromkeys(r["temperature"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, axes = _grid(plt, len(domains), len(temps))
    for i, d in enumerate(domains):
        for j, t in enumerate(temps):
            ax = axes[i][j]
            cell = [r for r in rows if r["domain"] == d and r["temperature"] == t]
            batches = sorted({r["batch_size"] for r in cell})
            pick = {(r["batch_size"], r["method"]): r[key] for r in cell}
            _bars(ax, batches, methods, lambda b, m: pick.get((b, m)), {m: _color(m) for m in methods})
            ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
            if reference is not None:
                ax.axhline(reference, color="black", lw=0.8)
            ax.set(title=f"{d} prompts, temperature {t:g}", ylabel=ylabel)
    axes[0][0].legend(fontsize=7, ncols=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sim_load_figure(rows: list[dict], path: Path) -> None:
    """Mean end-to-end latency and throughput against load, one line per tree policy."""
    plt = _plt()
    load = [r for r in rows if r["experiment"] == "load"]
    pairs = list(dict.fromkeys(r["pair"] for r in load))
    fig, axes = _grid(plt, len(pairs), 2)
    for i, pair in enumerate(pairs):
        mine = [r for r in load if r["pair"] == pair]
        for m in [m for m in METHODS if any(r["policy"] == m for r in mine)]:
            pts = sorted((r["x"], r["e2e_mean_s"], r["throughput_tokens_per_s"]) for r in mine if r["policy"] == m)
            xs = [p[0] for p in pts]
            axes[i][0].plot(xs, [p[1] for p in pts], marker="o", color=_color(m), label=m)
            axes[i][1].plot(xs, [p[2] for p in pts], marker="o", color=_color(m), label=m)
        axes[i][0].set(xlabel="arrival rate (req/s)", ylabel="mean end-to-end latency (s)", yscale="log",
                       title=f"{pair}: latency")
        axes[i][1].set(xlabel="arrival rate (req/s)", ylabel="output tokens/s", title=f"{pair}: throughput")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sim_speedup_figure(speedups: list[dict], path: Path) -> None:
    """Mean end-to-end latency of each baseline over each dynamic policy, per load."""
    plt = _plt()
    load = [s for s in speedups if s["experiment"] == "load"]
    pairs = list(dict.fromkeys(s["pair"] for s in load))
    fig, axes = _grid(plt, len(DYNAMIC), max(len(pairs), 1))
    for i, cand in enumerate(DYNAMIC):
        for j, pair in enumerate(pairs):
            ax = axes[i][j]
            mine = [s for s in load if s["pair"] == pair and s["dynamic"] == cand]
            rates = sorted({s["x"] for s in mine})
            pick = {(s["x"], s["baseline"]): s["e2e_speedup"] for s in mine}
            _bars(ax, rates, list(BASELINES), lambda x, b: pick.get((x, b)), {b: _color(b) for b in BASELINES})
            ax.set_xticks(range(len(rates)), [f"{x:g} req/s" for x in rates])
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set(title=f"{pair}: {cand} against ...", ylabel="latency speed-up (mean E2E ratio)")
            ax.legend(fontsize=7, title="baseline", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sim_deployment_figure(rows: list[dict], path: Path) -> None:
    """Mean end-to-end latency per tree policy across TP, draft placement and batch budget."""
    plt = _plt()
    experiments = ["tp", "placement", "batch-budget"]
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    fig, axes = _grid(plt, len(pairs), len(experiments), w=4.6)
    for i, pair in enumerate(pairs):
        for j, exp in enumerate(experiments):
            ax = axes[i][j]
            mine = [r for r in rows if r["pair"] == pair and r["experiment"] == exp]
            if not mine:
                ax.text(0.5, 0.5, f"{pair}: {exp}\nnot run in this setting", ha="center", va="center")
                ax.axis("off")
                continue
            settings = list(dict.fromkeys(r["x"] for r in sorted(mine, key=lambda r: str(r["x"]).zfill(8))))
            policies = [m for m in METHODS if any(r["policy"] == m for r in mine)]
            pick = {(r["x"], r["policy"]): r["e2e_mean_s"] for r in mine}
            _bars(ax, settings, policies, lambda x, m: pick.get((x, m)), {m: _color(m) for m in policies})
            ax.set(title=f"{pair}: {mine[0]['x_field']}", ylabel="mean end-to-end latency (s)")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
