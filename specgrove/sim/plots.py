"""Vidur-style figures of one simulated run: CDFs of the request latencies (cdf.png) and each
replica's batch size, KV use and queue length over time (timeseries.png). Matplotlib (Agg),
imported only when a figure is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_POINTS = 4000  # per replica line: longer series are thinned evenly (the shape stays)
CDF_METRICS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))
SERIES_PANELS = (("batch_size", "batch size (running requests)"), ("kv_use", "KV use (fraction of capacity)"),
                 ("queue_len", "queue length (waiting requests)"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cdf(values) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of the finite values: sorted values and the share at or below each."""
    v = np.sort(np.asarray([x for x in values if x is not None], dtype=float))
    v = v[np.isfinite(v)]
    return v, np.arange(1, len(v) + 1) / max(len(v), 1)


def plot_cdfs(path: Path, requests: list[dict], title: str = "") -> None:
    """One PNG, one panel per latency (TTFT, TPOT, E2E), over the finished requests (rows of
    ``metrics.request_rows``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CDF_METRICS), figsize=(4 * len(CDF_METRICS), 3.4))
    for ax, (key, label) in zip(axes, CDF_METRICS):
        xs, ys = cdf(r[key] for r in requests if not r["rejected"] and not r["error"])
        if len(xs):
            ax.step(xs * 1e3, ys, where="post")
        else:
            ax.text(0.5, 0.5, "no finished request", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{label} (ms)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    fig.suptitle(f"{title}: latency CDFs" if title else "latency CDFs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _thin(t, y) -> tuple[np.ndarray, np.ndarray]:
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    if len(t) > MAX_POINTS:
        pick = np.linspace(0, len(t) - 1, MAX_POINTS).astype(int)
        t, y = t[pick], y[pick]
    return t, y


def plot_timeseries(path: Path, series: dict, title: str = "") -> None:
    """One PNG, one panel per quantity, one line per replica (``series``: replica id ->
    ``records.Series``, sampled at each step's end)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(SERIES_PANELS), 1, figsize=(8, 2.2 * len(SERIES_PANELS)), sharex=True)
    for ax, (key, label) in zip(axes, SERIES_PANELS):
        for rid, s in sorted(series.items()):
            if len(s):
                ax.step(*_thin(s.t_s, getattr(s, key)), where="post", lw=0.8, label=f"replica {rid}")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("simulated time (s)")
    if series and len(series) <= 16:
        axes[0].legend(fontsize=7, ncols=4)
    fig.suptitle(f"{title}: per replica, at each step" if title else "per replica, at each step", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
