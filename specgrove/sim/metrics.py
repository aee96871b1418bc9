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
            "queueing_s": r.admitted_s - r.arrival_s, "ttft_s": r.first_token_s - r.arrival_s + r.frontend_s,
            "tpot_s": tpot, "e2e_s": r.finish_s - r.arrival_s + r.frontend_s, "tau": r.tau,
            "preemptions": r.preemptions, "rejected": r.rejected, "error": r.error,
        })
    return rows


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def weighted_percentiles(values, weights=None) -> dict:
    """``_percentiles`` of values that each stand for ``weights`` samples (an inverted-CDF
    percentile: the smallest value with at least that share of the weight at or below it)."""
    values = np.asarray(values, dtype=float)
    if weights is None:
        return _percentiles(values)
    weights = np.asarray(weights, dtype=float)
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if not len(values):
        return _percentiles(values)
    order = np.argsort(values, kind="stable")
    values, cum = values[order], np.cumsum(weights[order])
    pick = [float(values[min(np.searchsorted(cum, q / 100 * cum[-1]), len(values) - 1)]) for q in (50, 90, 99)]
    return {"mean": float(np.average(values, weights=weights[order])), "p50": pick[0], "p90": pick[1], "p99": pick[2]}


def chunk_gaps(times) -> np.ndarray:
    """Inter-token latencies of one streamed request: the gaps between consecutive chunks'
    arrival times (as vLLM's ``benchmark_serving`` counts them; a chunk may hold several
    tokens under speculative decoding)."""
    return np.diff(np.asarray(times, dtype=float))


def itl_samples(records: list[RequestRecord], itl=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The run's inter-token latencies: ``itl`` = (gaps, weights) when given (the simulator's
    per-step gaps, ``records.Series``); else the finished requests' measured chunk gaps (a real
    run); else each finished request's mean gap (first to last token over its decode steps),
    weighted by its steps."""
    if itl is not None:
        return np.asarray(itl[0], dtype=float), np.asarray(itl[1], dtype=float)
    done = [r for r in records if not r.error and not r.rejected and r.finish_s == r.finish_s]
    if any(r.chunk_gaps_s for r in done):
        return np.array([g for r in done for g in r.chunk_gaps_s], dtype=float), None
    dec = [r for r in done if r.decode_steps > 0]
    return (np.array([(r.finish_s - r.first_token_s) / r.decode_steps for r in dec], dtype=float),
            np.array([r.decode_steps for r in dec], dtype=float))


REJECT_REASONS = ("context_length", "kv_capacity")  # the simulator's (``RequestRecord.reject_reason``)


def summarise(records: list[RequestRecord], slo, window_s: float, end_s: float, utilisation: dict,
              clamped: dict | None = None, arrivals_after_horizon: int = 0, itl=None) -> dict:
    """The run's summary. ``clamped``: how many prompt and output lengths were drawn above
    their max and cut to it; ``arrivals_after_horizon``: trace rows after the arrival window
    that were not run; ``itl``: (gaps, weights) of the inter-token latencies (``itl_samples``).
    Real runs (``specgrove load``) have the same keys.

    As vLLM's ``benchmark_serving``: TTFT, TPOT, ITL (``itl_s``) and E2E as mean, p50 (the
    median), p90 and p99; output token throughput (``output_throughput_tokens_per_s``, the
    same as ``throughput_tokens_per_s``) and total token throughput (prompt + output tokens of
    the finished requests, ``total_throughput_tokens_per_s``) over the span."""
    rows = request_rows(records)
    reasons = [r.reject_reason for r in records if r.rejected]
    col = {k: np.array([r[k] for r in rows], dtype=float) for k in ("arrival_s", "ttft_s", "tpot_s", "e2e_s", "queueing_s", "tau", "output_tokens")}
    done = ~np.isnan(col["e2e_s"]) if rows else np.zeros(0, bool)
    span = (end_s - col["arrival_s"].min()) if done.any() else 0.0
    ok = done & (col["ttft_s"] <= slo.ttft_s) & (col["tpot_s"] <= slo.tpot_s)
    if slo.e2e_s is not None:
        ok &= col["e2e_s"] <= slo.e2e_s
    tokens = float(col["output_tokens"][done].sum())
    prompt = float(np.array([r["prompt_tokens"] for r in rows], dtype=float)[done].sum()) if rows else 0.0
    gaps, gap_weights = itl_samples(records, itl)
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
        "output_throughput_tokens_per_s": per_s(tokens),
        "total_throughput_tokens_per_s": per_s(tokens + prompt),
        "throughput_requests_per_s": per_s(float(done.sum())),
        "goodput_requests_per_s": per_s(float(ok.sum())),
        "slo_attainment": float(ok.sum() / len(rows)) if rows else 0.0,
        "mean_tau": float(np.nanmean(col["tau"])) if done.any() and not np.isnan(col["tau"]).all() else None,
        "ttft_s": _percentiles(col["ttft_s"][done]),
        "tpot_s": _percentiles(col["tpot_s"][done]),
        "itl_s": weighted_percentiles(gaps, gap_weights),
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
