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


def run_parallel(fn: Callable, jobs: list, processes: int | None, crashed: Callable,
                 progress: str | None = None) -> list:
    """``fn(job)`` for every job, in ``processes`` spawned processes, results in job order.
    ``fn`` reports its own errors in what it returns; a worker process that dies (killed,
    out of memory) fails only the jobs it held: their results are ``crashed(job, exc)``.
    ``progress``: a label; a bar on stderr then counts the jobs done (when stderr is a
    terminal: logs and pipes get no carriage-return noise)."""
    if not jobs:
        return []
    bar = None
    if progress is not None:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=progress, unit="variant", file=sys.stderr, leave=False, disable=None)
    try:
        return _run_jobs(fn, jobs, processes, crashed, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_jobs(fn: Callable, jobs: list, processes: int | None, crashed: Callable, bar) -> list:
    tick = (lambda *_: bar.update(1)) if bar is not None else (lambda *_: None)
    processes = max(1, min(processes or multiprocessing.cpu_count(), len(jobs)))
    if processes == 1:
        results = []
        for j in jobs:
            results.append(fn(j))
            tick()
        return results
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    try:
        futures = [pool.submit(fn, j) for j in jobs]
        for future in futures:
            future.add_done_callback(tick)
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


def _unit(field: str) -> str:
    """The unit of a --vary field's values, for the x axis label."""
    leaf = field.rsplit(".", 1)[-1]
    if leaf == "rate":
        return " (req/s)"
    if leaf.endswith("_s"):
        return " (s)"
    if "budget" in leaf:
        return " (tree nodes)"
    if leaf in ("max_batch",):
        return " (requests)"
    if leaf in ("tp", "gpus_per_node", "draft_gpus"):
        return " (GPUs)"
    return ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# (summary key, panel title, y label, scale to the label's unit, percentiles shown); a
# latency distribution shows its p50 and p99, a scalar figure itself.
PLOT_PANELS = (
    ("e2e_s", "end-to-end latency", "latency (s)", 1.0, ("p50", "p99")),
    ("ttft_s", "time to first token", "TTFT (ms)", 1e3, ("p50", "p99")),
    ("throughput_tokens_per_s", "throughput", "throughput (tokens/s)", 1.0, ()),
)


def plot_spec(results: Sequence, x_field: str = "workload.rate") -> dict:
    """What ``plot`` draws, as data: the x field and whether its values are categories (any
    value not a number: bars) or numbers (lines); per panel its title, axis labels (with
    units) and series (label, x values, y values); latency panels have a p50 and a p99
    series per variant group. Every y axis starts at zero. Failed variants are left out."""
    from specgrove.sim.scenario import lookup

    groups: dict[str, list] = {}
    for v in _variants(results):
        if not v.ok:
            continue
        label = ", ".join(f"{k}={val}" for k, val in v.overrides.items() if k != x_field) or "base"
        x = v.overrides[x_field] if x_field in v.overrides else lookup(v.result.scenario.model_dump(), x_field)
        groups.setdefault(label, []).append((x, v.result.summary))
    xs_all = [x for points in groups.values() for x, _ in points]
    categorical = not all(_is_number(x) for x in xs_all)
    categories = list(dict.fromkeys(str(x) for x in xs_all)) if categorical else None
    panels = []
    for key, title, ylabel, scale, stats in PLOT_PANELS:
        series = []
        for label, points in groups.items():
            if not categorical:
                points = sorted(points, key=lambda p: p[0])
            xs = [str(p[0]) if categorical else p[0] for p in points]
            if stats:
                for stat in stats:
                    ys = [(s[key][stat] * scale if s[key][stat] is not None else float("nan")) for _, s in points]
                    series.append({"label": f"{label} {stat}", "stat": stat, "group": label, "x": xs, "y": ys})
            else:
                series.append({"label": label, "stat": None, "group": label, "x": xs,
                               "y": [s[key] * scale for _, s in points]})
        panels.append({"key": key, "title": title, "ylabel": ylabel, "xlabel": x_field + _unit(x_field),
                       "series": series, "ymin": 0.0})
    return {"x_field": x_field, "categorical": categorical, "categories": categories,
            "kind": "bar" if categorical else "line", "panels": panels}


def render(spec: dict):
    """A matplotlib figure of ``plot_spec``'s data (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = spec["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        groups = list(dict.fromkeys(s["group"] for s in panel["series"]))
        color = {g: f"C{i % 10}" for i, g in enumerate(groups)}
        if spec["categorical"]:
            cats = spec["categories"]
            width = 0.8 / max(1, len(groups))
            for s in panel["series"]:
                offset = (groups.index(s["group"]) - (len(groups) - 1) / 2) * width
                pos = [cats.index(x) + offset for x in s["x"]]
                # p99 drawn pale behind the solid p50 (p50 <= p99): one bar shows both.
                style = {"alpha": 0.35, "hatch": "//", "zorder": 1} if s["stat"] == "p99" else {"zorder": 2}
                ax.bar(pos, s["y"], width=width, color=color[s["group"]], label=s["label"], **style)
            ax.set_xticks(range(len(cats)), cats)
        else:
            for s in panel["series"]:
                style = "--" if s["stat"] == "p99" else "-"
                ax.plot(s["x"], s["y"], style, marker="x" if s["stat"] == "p99" else "o",
                        color=color[s["group"]], label=s["label"])
        ax.set(xlabel=panel["xlabel"], ylabel=panel["ylabel"], title=panel["title"])
        ax.set_ylim(bottom=panel["ymin"])  # from zero: a 0.3% gap stays a 0.3% gap
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot(results: Sequence, path: Path, x_field: str = "workload.rate") -> dict:
    """Latency (E2E and TTFT, p50 and p99) and throughput against the first --vary field
    (``workload.rate`` when varied): lines for numbers, bars for categories, one series per
    other-field variant; y axes from zero. Returns ``plot_spec``'s data."""
    import matplotlib.pyplot as plt

    spec = plot_spec(results, x_field)
    fig = render(spec)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return spec


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
