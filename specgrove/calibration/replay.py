"""Replay a recorded real run in the simulator under other policies.

A recorded run is what ``specgrove load`` wrote (``requests.csv``: each request's arrival and
lengths) and the server's step trace (``serve --trace``: every step's trees and acceptance).
The replay keeps the run's arrivals and lengths exactly (as an arrival trace) and its measured
acceptance for the policy it ran (the trace's rows); any other policy runs on the scenario's
calibrated model. So "what if this very traffic had met another policy" is one sweep.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from specgrove.calibration.acceptance_fit import acceptance_rows, acceptance_rows_by_generated
from specgrove.calibration.profile import Profile, load_profile
from specgrove.trace import read_trace


class ReplayError(ValueError):
    """A run directory or trace that cannot be replayed; the message names it."""


def arrivals_from_run(requests_csv: Path, out: Path) -> int:
    """The run's requests as an arrival trace (the simulator's JSON-lines format)."""
    try:
        with open(requests_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ReplayError(f"{requests_csv}: cannot read: {exc.strerror}") from None
    needed = {"arrival_s", "prompt_tokens", "output_tokens", "domain"}
    if not rows or not needed <= set(rows[0]):
        raise ReplayError(f"{requests_csv}: needs the columns {', '.join(sorted(needed))} (a `specgrove load` run)")
    rows.sort(key=lambda r: float(r["arrival_s"]))
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"arrival_s": float(r["arrival_s"]), "prompt_tokens": int(r["prompt_tokens"]),
                                "output_tokens": int(r["output_tokens"]), "domain": r["domain"]}) + "\n")
    return len(rows)


def replay_profile(base: Profile, trace_path: Path) -> tuple[Profile, list[str]]:
    """The scenario's profile with the run's own measured acceptance for the method(s) it ran."""
    trace = read_trace(trace_path)
    recorded = acceptance_rows(trace)
    if not recorded:
        raise ReplayError(f"{trace_path}: the trace holds no decoding steps")
    rows = {**base.acceptance_rows, **recorded}
    # A recorded method's binned rows are the run's own (or none, if it was too short to bin):
    # never the base profile's bins alongside the run's pooled rows.
    binned = {m: by for m, by in base.acceptance_rows_by_generated.items() if m not in recorded}
    binned.update(acceptance_rows_by_generated(trace))
    return Profile(base.cost, base.draft, rows, base.sources + [str(trace_path)], base.fit,
                   dict(base.cost_by_method), base.frontend_s, dict(base.lookup), binned), sorted(recorded)


def prepare(run_dir: Path, scenario_data: dict, profile_path: str, trace_path: Path | None, out: Path) -> tuple[dict, list[str], int]:
    """Write DIR/arrivals.jsonl and DIR/replay_profile.json; returns the replay's base scenario
    data, the recorded methods and the number of requests."""
    out.mkdir(parents=True, exist_ok=True)
    n = arrivals_from_run(run_dir / "requests.csv", out / "arrivals.jsonl")
    trace_path = trace_path or run_dir / "trace.jsonl"
    if not trace_path.exists():
        raise ReplayError(f"{trace_path}: no step trace of the run (start the server with --trace, or pass --trace)")
    profile, methods = replay_profile(load_profile(profile_path), trace_path)
    profile.save(out / "replay_profile.json")
    data = json.loads(json.dumps(scenario_data))
    last = max(json.loads(line)["arrival_s"] for line in (out / "arrivals.jsonl").read_text().splitlines())
    data["workload"] = {**data.get("workload", {}), "arrival": "trace", "trace": str((out / "arrivals.jsonl").resolve())}
    data["duration_s"] = max(last, 1e-3)
    data["horizon_s"] = None
    data.setdefault("calibration", {})["profile"] = str((out / "replay_profile.json").resolve())
    data.setdefault("acceptance", {})["mode"] = "tabulated"
    return data, methods, n
