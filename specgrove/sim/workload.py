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


def sample_length(dist, rng: np.random.Generator) -> int:
    """One length from a ``fixed`` / ``uniform`` / ``lognormal`` spec (see ``scenario``)."""
    if dist.dist == "fixed":
        value = dist.value
    elif dist.dist == "uniform":
        value = int(rng.integers(dist.low, dist.high + 1))
    else:  # lognormal, parametrised by its median: median = exp(mu)
        value = int(round(dist.median * math.exp(dist.sigma * rng.standard_normal())))
    return int(min(max(value, 1), dist.max))


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
    weights = np.array([workload.domains[n] for n in names]) if workload.domains else np.ones(1)
    weights = weights / weights.sum()
    t = 0.0
    for gap in _gaps(workload, rng):
        t += gap
        domain = names[0] if len(names) == 1 else names[int(rng.choice(len(names), p=weights))]
        yield Arrival(t, sample_length(workload.prompt, rng), sample_length(workload.output, rng), domain)


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


def scenario_arrivals(workload, duration_s: float, rng: np.random.Generator,
                      trace: Sequence[Arrival] | None = None) -> Iterator[Arrival]:
    """A scenario's arrivals, up to ``duration_s``: what the simulator runs and what
    ``specgrove load`` sends to a real server (with the same ``rng``, the same requests)."""
    for a in arrivals(workload, rng, trace):
        if a.arrival_s > duration_s:
            return
        yield a
