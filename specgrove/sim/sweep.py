"""Sweeps: the cross product of ``--vary`` values, run in parallel, tabled and plotted."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from specgrove.results import manifest, staged
from specgrove.sim.scenario import ScenarioError, portable


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


def combinations(vary: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of ``vary``'s values, as overrides (dotted field -> value)."""
    keys = list(vary)
    return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle: workers that each caught it would print a traceback
    # apiece. The parent stops them itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_parallel(fn: Callable, jobs: list, processes: int | None, crashed: Callable) -> list:
    """``fn(job)`` for every job, in ``processes`` spawned processes, results in job order.
    ``fn`` reports its own errors in what it returns; a worker process that dies (killed,
    out of memory) fails only the jobs it held: their results are ``crashed(job, exc)``."""
    if not jobs:
        return []
    processes = max(1, min(processes or multiprocessing.cpu_count(), len(jobs)))
    if processes == 1:
        return [fn(j) for j in jobs]
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    try:
        futures = [pool.submit(fn, j) for j in jobs]
        results = []
        for job, future in zip(jobs, futures):
            try:
                results.append(future.result())
            except BrokenProcessPool as exc:
                results.append(crashed(job, exc))
        pool.shutdown()
        return results
    except BaseException:  # Ctrl-C (or an error here): stop the workers, not wait for them
        workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        for proc in workers:
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


TABLE_COLUMNS = (
    ("tok/s", "throughput_tokens_per_s", "{:.1f}"),
    ("req/s", "throughput_requests_per_s", "{:.2f}"),
    ("goodput", "goodput_requests_per_s", "{:.2f}"),
    ("tau", "mean_tau", "{:.2f}"),
)


def _variants(results: Sequence) -> list:
    """Sweep results as ``api.Variant``s: given as such, or as (overrides, Result) pairs."""
    from specgrove.sim.api import Variant

    return [r if isinstance(r, Variant) else Variant(i, r[0], r[1].scenario, result=r[1])
            for i, r in enumerate(results)]


def table(results: Sequence) -> str:
    """One row per variant (``api.Variant`` or (overrides, Result)); a failed one reads FAILED."""
    variants = _variants(results)
    keys = list(variants[0].overrides) if variants else []
    head = keys + [c[0] for c in TABLE_COLUMNS] + ["ttft p50", "tpot p50", "e2e p99", "rejected"]
    lines = []
    for v in variants:
        cells = [str(v.overrides[k]) for k in keys]
        if not v.ok:
            lines.append(cells + ["FAILED"] + ["-"] * (len(head) - len(cells) - 1))
            continue
        s = v.result.summary
        cells += ["-" if s[key] is None else fmt.format(s[key]) for _, key, fmt in TABLE_COLUMNS]
        cells += [_fmt_s(s["ttft_s"]["p50"]), _fmt_s(s["tpot_s"]["p50"]), _fmt_s(s["e2e_s"]["p99"])]
        cells.append(str(s["num_rejected"]))
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head] + lines)


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}ms"


def plot(results: Sequence, path: Path, x_field: str = "workload.rate") -> None:
    """Latency (p50 E2E) and throughput against load, one line per other-field variant
    (failed variants left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = {}
    for v in _variants(results):
        if not v.ok:
            continue
        label = ", ".join(f"{k}={val}" for k, val in v.overrides.items() if k != x_field) or "base"
        x = v.overrides.get(x_field, v.result.scenario.workload.rate)
        lines.setdefault(label, []).append((x, v.result.summary))
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
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")


def write_sweep(results: Sequence, out: Path, fields: list[str], command: str | None = None,
                manifest_extra: dict | None = None) -> str:
    """DIR/sweep.md (the table), DIR/sweep.json (each variant's overrides, status, summary or
    error), DIR/sweep.png (the variants that ran), DIR/variants/NNN/ (each variant's resolved
    scenario.json, which ``specgrove sim`` reads back, and its summary.json or error.txt) and,
    given the ``command``, DIR/manifest.json; all written to temporaries and renamed into
    place together (``results.staged``). Returns the table. ``results``: ``api.Variant``s, or (overrides, Result) pairs."""
    variants = _variants(results)
    text = table(variants)
    entries = []
    with staged(out) as stage:
        folder = stage.folder("variants")
        for v in variants:
            name = f"{v.index:03d}"
            (folder / name).mkdir()
            entry = {"variant": name, "vary": v.overrides, "status": "ok" if v.ok else "failed"}
            if v.scenario is not None:
                _write_json(folder / name / "scenario.json", portable(v.scenario))
                entry["scenario"] = f"variants/{name}/scenario.json"
            if v.ok:
                _write_json(folder / name / "summary.json", v.result.summary)
                entry["summary"] = v.result.summary
            else:
                (folder / name / "error.txt").write_text((v.error or "") + "\n" + (v.detail or ""), encoding="utf-8")
                entry["error"] = v.error
            entries.append(entry)
        stage.write_text("sweep.md", "```\n" + text + "\n```\n")
        stage.write_json("sweep.json", entries)
        if any(v.ok for v in variants):
            plot(variants, stage.file("sweep.png"), "workload.rate" if "workload.rate" in fields else fields[0])
        if command is not None:
            stage.write_json("manifest.json", manifest(command, **(manifest_extra or {})))
    return text
