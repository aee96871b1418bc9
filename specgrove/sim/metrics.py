"""Per-request and per-run metrics, and writing them: summary.json plus requests.csv.

Per request: TTFT (arrival to first token), TPOT (mean gap between later tokens), E2E,
queueing (arrival to first admission) and tau (tokens emitted per verification step).
Per run: throughput over the span from the first arrival to the last finish, goodput (requests
that met every SLO, per second), percentiles, utilisation, and a Little's-law check over the
arrival window: L (time-average requests in system) against lambda * W.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from specgrove.sim.records import RequestRecord

CSV_FIELDS = (
    "request_id", "replica", "domain", "arrival_s", "prompt_tokens", "output_tokens",
    "queueing_s", "ttft_s", "tpot_s", "e2e_s", "tau", "preemptions", "rejected", "error",
)


def request_rows(records: Iterable[RequestRecord]) -> list[dict]:
    rows = []
    for r in records:
        tpot = (r.finish_s - r.first_token_s) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
        rows.append({
            "request_id": r.request_id, "replica": r.replica, "domain": r.domain,
            "arrival_s": r.arrival_s, "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens,
            "queueing_s": r.admitted_s - r.arrival_s, "ttft_s": r.first_token_s - r.arrival_s,
            "tpot_s": tpot, "e2e_s": r.finish_s - r.arrival_s, "tau": r.tau,
            "preemptions": r.preemptions, "rejected": r.rejected, "error": r.error,
        })
    return rows


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


REJECT_REASONS = ("context_length", "kv_capacity")  # the simulator's (``RequestRecord.reject_reason``)


def summarise(records: list[RequestRecord], slo, window_s: float, end_s: float, utilisation: dict,
              clamped: dict | None = None, arrivals_after_horizon: int = 0) -> dict:
    """The run's summary. ``clamped``: how many prompt and output lengths were drawn above
    their max and cut to it; ``arrivals_after_horizon``: trace rows after the arrival window
    that were not run. Real runs (``specgrove load``) have the same keys."""
    rows = request_rows(records)
    reasons = [r.reject_reason for r in records if r.rejected]
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in ("arrival_s", "ttft_s", "tpot_s", "e2e_s", "queueing_s", "tau", "output_tokens")}
    done = ~np.isnan(col["e2e_s"]) if rows else np.zeros(0, bool)
    span = (end_s - col["arrival_s"].min()) if done.any() else 0.0
    ok = done & (col["ttft_s"] <= slo.ttft_s) & (col["tpot_s"] <= slo.tpot_s)
    if slo.e2e_s is not None:
        ok &= col["e2e_s"] <= slo.e2e_s
    tokens = float(col["output_tokens"][done].sum())
    # Little's law over [0, window]: each request contributes the part of its stay inside it.
    finish = np.where(done, col["arrival_s"] + np.nan_to_num(col["e2e_s"]), np.inf) if rows else np.zeros(0)
    in_window = col["arrival_s"] <= window_s if rows else np.zeros(0, bool)
    stay = np.clip(np.minimum(finish, window_s) - col["arrival_s"], 0, None) if rows else np.zeros(0)
    per_s = (lambda x: x / span if span > 0 else 0.0)
    return {
        "num_requests": len(rows),
        "num_finished": int(done.sum()),
        "num_rejected": int(sum(r["rejected"] for r in rows)),
        "rejected": {k: reasons.count(k) for k in REJECT_REASONS},
        "clamped": {"prompt": 0, "output": 0, **(clamped or {})},
        "arrivals_after_horizon": int(arrivals_after_horizon),
        "sim_end_s": end_s,
        "span_s": span,
        "throughput_tokens_per_s": per_s(tokens),
        "throughput_requests_per_s": per_s(float(done.sum())),
        "goodput_requests_per_s": per_s(float(ok.sum())),
        "slo_attainment": float(ok.sum() / len(rows)) if rows else 0.0,
        "mean_tau": float(np.nanmean(col["tau"])) if done.any() and not np.isnan(col["tau"]).all() else None,
        "ttft_s": _percentiles(col["ttft_s"][done]),
        "tpot_s": _percentiles(col["tpot_s"][done]),
        "e2e_s": _percentiles(col["e2e_s"][done]),
        "queueing_s": _percentiles(col["queueing_s"][done]),
        "utilisation": utilisation,
        "little": {
            "window_s": window_s,
            "L": float(stay.sum() / window_s),
            "lambda": float(in_window.sum() / window_s),
            "W": float(col["e2e_s"][in_window & done].mean()) if (in_window & done).any() else None,
        },
    }


def write_requests_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_summary(summary: dict, path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n")
