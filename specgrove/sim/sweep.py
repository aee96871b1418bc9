"""Sweeps: the cross product of ``--vary`` values, run in parallel, tabled and plotted."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from specgrove.sim.build import resolve_variant
from specgrove.sim.scenario import Scenario, ScenarioError


def parse_value(text: str) -> Any:
    """``--vary`` values are TOML-ish scalars: int, float, true/false, else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_vary(specs: Sequence[str]) -> dict[str, list]:
    vary: dict[str, list] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        if not sep or not field or not values:
            raise ScenarioError(f"--vary {spec!r}: expected FIELD=V1,V2,...")
        if field.strip() in vary:  # keeping only the last would silently drop values
            raise ScenarioError(f"--vary {field.strip()} is given twice; list all its values in one --vary")
        vary[field.strip()] = [parse_value(v) for v in values.split(",")]
    return vary


def combinations(base: Scenario, vary: dict[str, list]) -> list[tuple[dict[str, Any], Scenario, Any]]:
    """Every combination as (overrides, scenario, built): validated and built once each, so a
    bad variant fails before any process starts."""
    keys = list(vary)
    out = [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]
    return [(overrides, *resolve_variant(base, overrides)) for overrides in out]


def run_parallel(fn: Callable, jobs: list, processes: int | None, progress: bool) -> list:
    processes = max(1, min(processes or multiprocessing.cpu_count(), len(jobs)))
    if processes == 1:
        results = [fn(j) for j in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(fn, jobs)
    return results


TABLE_COLUMNS = (
    ("tok/s", "throughput_tokens_per_s", "{:.1f}"),
    ("req/s", "throughput_requests_per_s", "{:.2f}"),
    ("goodput", "goodput_requests_per_s", "{:.2f}"),
    ("tau", "mean_tau", "{:.2f}"),
)


def table(results: list[tuple[dict[str, Any], Any]]) -> str:
    keys = list(results[0][0]) if results else []
    head = keys + [c[0] for c in TABLE_COLUMNS] + ["ttft p50", "tpot p50", "e2e p99"]
    lines = []
    for overrides, res in results:
        s = res.summary
        cells = [str(overrides[k]) for k in keys]
        cells += ["-" if s[key] is None else fmt.format(s[key]) for _, key, fmt in TABLE_COLUMNS]
        cells += [_fmt_s(s["ttft_s"]["p50"]), _fmt_s(s["tpot_s"]["p50"]), _fmt_s(s["e2e_s"]["p99"])]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head] + lines)


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}ms"


def plot(results: list[tuple[dict[str, Any], Any]], path: Path, x_field: str = "workload.rate") -> None:
    """Latency (p50 E2E) and throughput against load, one line per other-field variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = {}
    for overrides, res in results:
        label = ", ".join(f"{k}={v}" for k, v in overrides.items() if k != x_field) or "base"
        x = overrides.get(x_field, res.scenario.workload.rate)
        lines.setdefault(label, []).append((x, res.summary))
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in lines.items():
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        ax_lat.plot(xs, [(p[1]["e2e_s"]["p50"] or float("nan")) for p in points], marker="o", label=label)
        ax_tp.plot(xs, [p[1]["throughput_tokens_per_s"] for p in points], marker="o", label=label)
    ax_lat.set(xlabel=x_field, ylabel="p50 end-to-end latency (s)", title="latency")
    ax_tp.set(xlabel=x_field, ylabel="tokens/s", title="throughput")
    ax_lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_sweep(results: list[tuple[dict[str, Any], Any]], out: Path, fields: list[str]) -> str:
    """DIR/sweep.md (the table), DIR/sweep.json (each variant's overrides and summary) and
    DIR/sweep.png; returns the table."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    text = table(results)
    (out / "sweep.md").write_text("```\n" + text + "\n```\n")
    (out / "sweep.json").write_text(json.dumps([{"vary": v, "summary": r.summary} for v, r in results], indent=2) + "\n")
    x_field = "workload.rate" if "workload.rate" in fields else fields[0]
    plot(results, out / "sweep.png", x_field)
    return text
