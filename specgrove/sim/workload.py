"""Request arrivals and lengths: Poisson, Gamma (with a CV), on/off bursts, or a JSONL trace.

Arrival streams are lazy iterators of ``Arrival`` so an hour of traffic never sits in memory;
the engine's arrival process pulls one at a time. Every draw comes from the Generator passed
in, so a seed fixes the whole stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgrove.jsonl import read_jsonl


class ArrivalTraceError(ValueError):
    """A bad trace line; the message names the file, line and field."""


@dataclass(frozen=True)
class Arrival:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    domain: str = "default"
    prompt: str | None = None  # a trace may carry the prompt's text (the real server needs one)
    prompt_clamped: bool = False  # drawn above its LengthSpec's max, and cut to it
    output_clamped: bool = False


def draw_length(dist, rng: np.random.Generator) -> tuple[int, bool]:
    """One length from a ``fixed`` / ``uniform`` / ``lognormal`` spec (see ``scenario``), and
    whether it was drawn above ``dist.max`` and clamped to it."""
    if dist.dist == "fixed":
        value = dist.value
    elif dist.dist == "uniform":
        value = int(rng.integers(dist.low, dist.high + 1))
    else:  # lognormal, parametrised by its median: median = exp(mu)
        value = int(round(dist.median * math.exp(dist.sigma * rng.standard_normal())))
    value = max(value, 1)
    return (int(dist.max), True) if value > dist.max else (int(value), False)


def sample_length(dist, rng: np.random.Generator) -> int:
    return draw_length(dist, rng)[0]


def mean_length(dist) -> float:
    if dist.dist == "fixed":
        return float(min(dist.value, dist.max))
    if dist.dist == "uniform":
        return (dist.low + dist.high) / 2
    return min(dist.median * math.exp(dist.sigma**2 / 2), dist.max)


def _gaps(workload, rng: np.random.Generator) -> Iterator[float]:
    """Inter-arrival times, in seconds."""
    if workload.arrival == "poisson":
        while True:
            yield rng.exponential(1.0 / workload.rate)
    elif workload.arrival == "gamma":
        # Gamma with shape k has CV 1/sqrt(k); the scale keeps the mean gap at 1/rate.
        shape = 1.0 / workload.cv**2
        while True:
            yield rng.gamma(shape, 1.0 / (workload.rate * shape))
    else:  # onoff: Poisson at ``rate`` while on, silent while off
        period = workload.on_s + workload.off_s
        t = 0.0
        while True:
            nxt = t + rng.exponential(1.0 / workload.rate)
            phase = nxt % period
            if phase >= workload.on_s:  # fell into an off window: restart at the next on
                nxt += period - phase
            yield nxt - t
            t = nxt


def synthetic(workload, rng: np.random.Generator) -> Iterator[Arrival]:
    names = sorted(workload.domains) or ["default"]
    weights = np.array([workload.domains[n] for n in names], dtype=float) if workload.domains else np.ones(1)
    weights = weights / weights.max()  # first by the largest: a sum of huge weights would overflow
    weights = weights / weights.sum()
    t = 0.0
    for gap in _gaps(workload, rng):
        t += gap
        domain = names[0] if len(names) == 1 else names[int(rng.choice(len(names), p=weights))]
        (prompt, p_clamped), (output, o_clamped) = draw_length(workload.prompt, rng), draw_length(workload.output, rng)
        yield Arrival(t, prompt, output, domain, prompt_clamped=p_clamped, output_clamped=o_clamped)


TRACE_FIELDS = {"arrival_s": float, "prompt_tokens": int, "output_tokens": int}


def load_trace(path: str | Path) -> list[Arrival]:
    """Read JSON lines ``{"arrival_s", "prompt_tokens", "output_tokens"[, "domain"]}``."""
    out: list[Arrival] = []
    for where, row in read_jsonl(path, "trace", ArrivalTraceError):
        for name, kind in TRACE_FIELDS.items():
            if name not in row:
                raise ArrivalTraceError(f"{where}: missing field {name!r}")
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (kind is int and value != int(value)):
                raise ArrivalTraceError(f"{where}: field {name!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        if row["arrival_s"] < 0 or row["prompt_tokens"] < 1 or row["output_tokens"] < 1:
            raise ArrivalTraceError(f"{where}: arrival_s must be >= 0 and token counts >= 1")
        if out and row["arrival_s"] < out[-1].arrival_s:
            raise ArrivalTraceError(f"{where}: arrival_s {row['arrival_s']} goes back in time (previous {out[-1].arrival_s})")
        text = row.get("prompt")
        if text is not None and not (isinstance(text, str) and text.strip()):
            raise ArrivalTraceError(f"{where}: field 'prompt' must be a non-empty string")
        out.append(Arrival(float(row["arrival_s"]), int(row["prompt_tokens"]), int(row["output_tokens"]),
                           str(row.get("domain", "default")), text))
    if not out:
        raise ArrivalTraceError(f"{path}: trace has no requests")
    return out


def arrivals(workload, rng: np.random.Generator, trace: Sequence[Arrival] | None = None) -> Iterator[Arrival]:
    return iter(trace) if workload.arrival == "trace" else synthetic(workload, rng)


def expected_arrivals(workload, duration_s: float, trace: Sequence[Arrival] | None = None) -> float:
    """About how many requests arrive by ``duration_s``: the trace's rows up to then, or the
    rate times the window (onoff: at most the on windows' share, plus one per period for the
    arrival an off window pushes to the next on). Cheap: nothing is drawn."""
    if workload.arrival == "trace":
        return float(sum(1 for a in (trace or ()) if a.arrival_s <= duration_s))
    estimate = workload.rate * duration_s
    if workload.arrival == "onoff":
        period = workload.on_s + workload.off_s
        estimate = min(estimate, (duration_s / period + 1) * (workload.rate * workload.on_s + 1))
    return estimate


def arrivals_after(trace: Sequence[Arrival] | None, duration_s: float) -> int:
    """The trace's rows that come after ``duration_s`` (a run does not replay them)."""
    return sum(1 for a in (trace or ()) if a.arrival_s > duration_s)


def scenario_arrivals(workload, duration_s: float, rng: np.random.Generator,
                      trace: Sequence[Arrival] | None = None) -> Iterator[Arrival]:
    """A scenario's arrivals, up to ``duration_s``: what the simulator runs and what
    ``specgrove load`` sends to a real server (with the same ``rng``, the same requests)."""
    for a in arrivals(workload, rng, trace):
        if a.arrival_s > duration_s:
            return
        yield a
