"""Reading results from their files, and writing a scenario back as TOML.

Everything the executor, ``load``, ``validate``, ``replay`` and ``study`` leave behind is read
here from disk (JSON, CSV, JSON lines); nothing here imports the executor or torch. A file that
cannot be used raises ``ResultsError`` with one line naming it, which the pages show as is.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from specgrove.trace import StepTraceError, read_trace


class ResultsError(ValueError):
    """A results path that cannot be read; the message names it."""


def _file(path: str | Path, name: str) -> Path:
    """``path`` itself when it is a file, else ``path/name``; it must exist."""
    path = Path(str(path).strip()).expanduser()
    target = path / name if path.is_dir() else path
    if not target.is_file():
        where = f"{str(path)!r} has no {name}" if path.is_dir() else f"{str(path)!r} does not exist"
        raise ResultsError(where)
    return target


def read_json(path: str | Path, name: str) -> dict | list:
    target = _file(path, name)
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{target}: not readable JSON ({str(exc).splitlines()[0]})") from None


def read_csv(path: str | Path, name: str) -> pd.DataFrame:
    target = _file(path, name)
    try:
        return pd.read_csv(target)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ResultsError(f"{target}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def load_bench(path: str | Path) -> dict:
    """``bench.json`` (a file, or the directory ``specgrove bench --out`` wrote)."""
    data = read_json(path, "bench.json")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or "config" not in data:
        raise ResultsError(f"{path}: not a bench.json (needs 'config' and 'rows')")
    return data


def load_run(path: str | Path) -> tuple[dict, pd.DataFrame, dict]:
    """A ``load`` (or ``sim``) output directory: summary.json, requests.csv, and what ran
    (load.json, or the simulator's run.json)."""
    summary = read_json(path, "summary.json")
    requests = read_csv(path, "requests.csv")
    missing = {"ttft_s", "tpot_s", "e2e_s"} - set(requests.columns)
    if missing:
        raise ResultsError(f"{path}: requests.csv lacks the column {sorted(missing)[0]!r}")
    info = {}
    for name in ("load.json", "run.json"):
        if (Path(path) / name).is_file():
            info = read_json(path, name)
            break
    return summary, requests, info


def trace_trees(path: str | Path, limit: int = 2000) -> list[dict]:
    """The first ``limit`` request-steps of a step trace (``--trace``) that recorded their
    tree: step index, method, batch size, request, parents, scores and accepted nodes."""
    target = _file(path, "trace.jsonl")
    try:
        trace = read_trace(target)
    except StepTraceError as exc:
        raise ResultsError(str(exc)) from None
    out = []
    for step, share in trace.request_steps():
        if share.parents:
            out.append({"step": step.step, "method": step.labels.method, "batch_size": step.batch_size,
                        "max_batch": step.labels.max_batch, "request_id": share.request_id,
                        "parents": list(share.parents), "scores": list(share.scores),
                        "accepted": list(share.accepted_nodes), "emitted": share.emitted})
            if len(out) >= limit:
                break
    if not out:
        raise ResultsError(f"{target}: no step records a tree (the trace holds no 'parents')")
    return out


def load_validation(path: str | Path) -> dict:
    """``validate``'s validation.json, with per-request rows where the directory holds them
    (``requests_load{L}_{policy}_{real|sim}.csv``) under ``rows[(load, policy, world)]``."""
    data = read_json(path, "validation.json")
    if not isinstance(data, dict) or not {"runs", "ranking", "loads"} <= set(data):
        raise ResultsError(f"{path}: not a validation.json (needs 'runs', 'ranking', 'loads')")
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    rows = {}
    for run in data["runs"]:
        for world in ("real", "sim"):
            f = directory / f"requests_load{run['load']:g}_{run['policy']}_{world}.csv"
            if f.is_file():
                rows[(run["load"], run["policy"], world)] = read_csv(f, f.name)
    data["rows"] = rows
    return data


def load_sweep(path: str | Path) -> tuple[list[dict], list[dict]]:
    """``sweep``'s or ``replay``'s sweep.json: the variants that ran ({vary, summary}) and
    those that failed ({vary, error})."""
    data = read_json(path, "sweep.json")
    if not isinstance(data, list) or not all(isinstance(v, dict) and "vary" in v for v in data):
        raise ResultsError(f"{path}: not a sweep.json (a list of {{vary, summary}})")
    ran = [v for v in data if isinstance(v.get("summary"), dict)]
    failed = [v for v in data if not isinstance(v.get("summary"), dict)]
    if not ran:
        raise ResultsError(f"{path}: no variant of this sweep ran")
    return ran, failed


def load_study(path: str | Path) -> dict:
    """A ``study`` directory: real.csv, sim.csv, sim_speedups.csv, study.json, report.md."""
    info = read_json(path, "study.json")
    out = {"info": info, "report": _file(path, "report.md").read_text(encoding="utf-8")}
    for name in ("real", "real_ratios", "sim", "sim_speedups"):
        out[name] = read_csv(path, f"{name}.csv")
    return out


# --- Scenario data as TOML (the simulator reads TOML; tomllib only reads it) --------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ValueError(f"cannot write {type(value).__name__} as TOML")


def to_toml(data: dict, prefix: str = "") -> str:
    """Scalars and tables of scalars as ``key = value`` lines; tables holding tables as
    ``[section]`` headers. None (an unset optional) is left out."""
    lines, tables = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()):
            tables.append((k, v))
        elif isinstance(v, dict) and not prefix:
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {toml_value(v)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        text += f"\n[{name}]\n" + to_toml(v, name)
    return text


REPO = Path(__file__).resolve().parents[2]


def default_path(relative: str) -> str:
    """``relative`` (a path in the repository, e.g. ``benchmarks/results/demo-cpu``) as the
    page's starting value: as given when the working directory holds it, absolute when only the
    repository does, else empty."""
    if Path(relative).exists():
        return relative
    return str(REPO / relative) if (REPO / relative).exists() else ""


def stamp(path: str | Path) -> float:
    """A cache key that changes when the results change: the latest modification time of the
    file, or of a directory and the files directly in it (0 when absent)."""
    path = Path(str(path).strip()).expanduser()
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.iterdir()]
    except OSError:
        return 0.0
    return max(times)
