"""Running a scenario for the dashboard: ``sim.api.run_scenario`` in a worker thread, its
progress read from the step trace it writes as it goes, and utilisation over time from that
trace. The run itself is ``run_scenario``'s, unchanged: a trace is written, never read back
into the run, so the summary equals a run without one.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from specgrove.sim.api import Result, estimate_requests, run_scenario
from specgrove.sim.build import resolve
from specgrove.sim.scenario import Scenario

# Above this many expected requests no trace is written (it grows with every step): the run
# shows a spinner instead of a progress bar, and no utilisation over time.
MAX_TRACED_REQUESTS = 20_000
TAIL_BYTES = 1 << 16


@dataclass
class Run:
    result: Result
    utilisation: pd.DataFrame | None  # time_s, resource, busy; None when not traced


def last_time(trace: Path) -> float | None:
    """The simulated time of the trace's last complete line (a step's end, a request's finish)."""
    try:
        with open(trace, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()[1 if size > TAIL_BYTES else 0:]):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        return rec.get("end_s", rec.get("finish_s"))
    return None


def run_with_progress(data: dict, on_progress: Callable[[float | None, str], None],
                      poll_s: float = 0.2) -> Run:
    """Validate and run ``data``; ``on_progress(fraction or None, text)`` is called from this
    thread while the run goes on. ``ScenarioError`` (a bad field) is raised before any run."""
    scenario, built = resolve(data)
    traced = estimate_requests(scenario, built) <= MAX_TRACED_REQUESTS
    with tempfile.TemporaryDirectory(prefix="specgrove-dash-") as tmp:
        trace = Path(tmp) / "trace.jsonl" if traced else None
        box: dict = {}

        def work() -> None:
            try:
                box["result"] = run_scenario(scenario, built=built, trace_path=trace)
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=work, name="specgrove-sim", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(poll_s)
            now = last_time(trace) if trace is not None else None
            if now is None:
                on_progress(None, "simulating...")
            elif now < scenario.duration_s:
                on_progress(now / scenario.duration_s, f"simulated {now:.1f} of {scenario.duration_s:g} s of arrivals")
            else:
                on_progress(1.0, f"arrivals done; finishing requests in flight (t = {now:.1f} s)")
        if "error" in box:
            raise box["error"]
        util = utilisation_frame(trace, scenario) if trace is not None else None
    return Run(box["result"], util)


def _steps(trace: Path) -> np.ndarray:
    """(start_s, end_s, draft_s, verify_s) of every step line."""
    out = []
    with open(trace, encoding="utf-8") as f:
        for line in f:
            if '"kind": "step"' not in line:
                continue
            r = json.loads(line)
            out.append((r["start_s"], r["end_s"], r["draft_ms"] / 1e3, r["verify_ms"] / 1e3))
    return np.array(out, dtype=float).reshape(-1, 4)


def busy_per_bin(start: np.ndarray, end: np.ndarray, edges: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Seconds of the intervals [start, end) inside each bin of ``edges``."""
    busy = np.zeros(len(edges) - 1)
    lo, hi = edges[:-1], edges[1:]
    for i in range(0, len(start), chunk):
        a, b = start[i:i + chunk, None], end[i:i + chunk, None]
        busy += np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0, None).sum(axis=0)
    return busy


def utilisation_frame(trace: Path, scenario: Scenario, num_bins: int = 120) -> pd.DataFrame | None:
    """Busy fraction per time bin, averaged over replicas. A shared draft: a step holds the
    target's GPUs from start to end. A separate draft: its GPU is busy for the step's draft
    time from the start, the target's for the verify time up to the end (within a step the
    split is approximate; the totals are the step's own)."""
    steps = _steps(trace)
    if not len(steps):
        return None
    start, end, draft, verify = steps.T
    edges = np.linspace(0.0, float(end.max()), num_bins + 1)
    width = (edges[1] - edges[0]) * scenario.deployment.num_replicas
    if scenario.deployment.draft_placement == "same":
        series = {"target GPUs (draft shared)": busy_per_bin(start, end, edges)}
    else:
        series = {"target GPUs": busy_per_bin(np.maximum(start, end - verify), end, edges),
                  "draft GPU": busy_per_bin(start, np.minimum(end, start + draft), edges)}
    frames = [pd.DataFrame({"time_s": edges[:-1], "resource": name, "busy": np.minimum(busy / width, 1.0)})
              for name, busy in series.items()]
    return pd.concat(frames, ignore_index=True)
