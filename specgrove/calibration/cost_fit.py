"""Fit an ``AffineCostModel`` to traced step times with robust least squares.

Each traced step gives three measurements and the features the simulator's planner charges
for them (``specgrove.sim.planner``), so a profile fitted here plugs straight in:

    verify   = t_base + t_req * batch + t_tok * tokens in the forward + t_ctx * cached tokens
    draft    = sum over rounds r of (d_base + d_req * decoders + d_tok * width_r + d_ctx * cached)
               + one more draft forward over the prompts of requests prefilled in the step
    other    = s_base + s_req * batch        (host work after verification, plus the gap to the
                                              next step when no admission came in between: a
                                              server's streaming and scheduling; plus draft time
                                              in a step with no draft round: prompt lookup's
                                              search)

The executor prefills apart, in ``prefill`` lines. With at least ``MIN_PREFILLS`` of them the
prefill forwards get terms of their own (a prompt's forward is not a wide verification: on the
demo pair a 48-token prefill took about 30% longer than the step terms priced it), and so does
the host work around an admission that interrupts a running batch:

    prefill       = p_base + p_req * requests + p_tok * prompt tokens     (target; draft alike)
    admit         = a_base + a_req * requests   (from the last step's end to the prefill's start,
                                                 less the host work a step is charged anyway)
    after_prefill = constant                    (from the prefill's end to the next step)

With fewer, the prefill lines join the target and draft points with the prompts as the
forward's tokens and no cached context. Coefficients are bounded at zero (time never falls
with more work).

The simulator adds step times up, so the fit must get their *mean* right, not their median:
on a loaded host step times have a long right tail (another thread holding a core, the GIL),
and a loss that discounts the whole tail fits the typical step and runs short. On the demo
pair's serving traces a soft-L1 loss at a small scale fitted 5-11% below the mean. So
``robust_fit`` is least squares with a Huber loss whose threshold is ten robust standard
deviations of the residuals: only far outliers (a page fault, a GC pause; well under 1% of
steps) lose weight, and the fitted mean stays within about 1% of the measured one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from specgrove.cost import AffineCostModel
from specgrove.trace import Trace


@dataclass
class Component:
    """One fitted time: its measured and fitted values (seconds), and the fit's quality."""

    name: str
    measured: np.ndarray
    fitted: np.ndarray
    coef: np.ndarray

    def quality(self) -> dict:
        y, f = self.measured, self.fitted
        if not len(y):
            return {"points": 0}
        ss_tot = float(((y - y.mean()) ** 2).sum())
        # Relative to the measurement, floored at a microsecond: a term measured as zero (no
        # host work in a simulated trace) must not read as an infinite error.
        rel = np.abs(f - y) / np.maximum(np.abs(y), 1e-6)
        p50, p90, p99 = np.percentile(rel, [50, 90, 99])
        return {"points": int(len(y)), "r2": 1.0 - float(((y - f) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0,
                "rel_error_p50": float(p50), "rel_error_p90": float(p90), "rel_error_p99": float(p99),
                "mean_measured_ms": float(y.mean() * 1e3), "mean_fitted_ms": float(f.mean() * 1e3)}


OUTLIER_SIGMAS = 10.0  # Huber threshold, in robust standard deviations of the residuals


def robust_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients of y ~ x @ coef: bounded least squares, then a Huber loss at
    ``OUTLIER_SIGMAS`` robust (MAD) standard deviations of its residuals; columns scaled for
    conditioning."""
    if not len(y):
        return np.zeros(x.shape[1])
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
    xs = x / scale
    start = np.clip(np.linalg.lstsq(xs, y, rcond=None)[0], 0, None) + 1e-12
    plain = least_squares(lambda c: xs @ c - y, start, bounds=(0, np.inf), x_scale="jac")
    res = xs @ plain.x - y
    sigma = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    if not sigma > 0:
        return plain.x / scale  # an exact fit: nothing to be robust against
    fit = least_squares(lambda c: xs @ c - y, plain.x, loss="huber", f_scale=OUTLIER_SIGMAS * sigma,
                        bounds=(0, np.inf), x_scale="jac")
    return fit.x / scale


MIN_PREFILLS = 10  # prefill lines a trace needs for prefill terms of their own


def _gaps(trace: Trace) -> dict[int, float]:
    """Seconds from each step's end to the next step's start, where the next step of the same
    run follows directly (no prefill between them), by position in ``trace.steps``."""
    admitted = {(p.labels, p.step) for p in trace.prefills}
    gaps = {}
    for i, (a, b) in enumerate(zip(trace.steps, trace.steps[1:])):
        follows = b.labels == a.labels and b.step == a.step + 1 and b.start_s >= a.end_s
        # An admission in between (a prefill line, or prefill inside the step) means the
        # engine may have been idle, waiting for an arrival: that gap is not host work.
        if follows and not b.num_prefill and (b.labels, b.step) not in admitted:
            gaps[i] = b.start_s - a.end_s
    return gaps


def _busy_admissions(trace: Trace):
    """Prefills that came in between two steps of a running batch (the step after holds more
    requests than were admitted): the engine was working, not waiting for an arrival, so the
    gaps around the prefill are host work. Yields (prefill, step before, step after)."""
    steps = {(s.labels, s.step): s for s in trace.steps}
    for p in trace.prefills:
        before, after = steps.get((p.labels, p.step - 1)), steps.get((p.labels, p.step))
        if (before is not None and after is not None and after.batch_size > p.num_requests
                and before.end_s <= p.start_s <= p.end_s <= after.start_s):
            yield p, before, after


def _features(trace: Trace, apart: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    target_x, target_y, draft_x, draft_y, other_x, other_y = [], [], [], [], [], []
    gaps = _gaps(trace)
    for i, s in enumerate(trace.steps):
        target_x.append([1.0, s.batch_size, s.tokens_in_forward, s.context_tokens])
        target_y.append(s.verify_ms / 1e3)
        rounds = s.draft_rounds
        if rounds or (s.num_prefill and s.draft_ms > 0):
            decoders = len(s.requests)
            ctx = sum(r.context_tokens for r in s.requests)
            extra = 1 if s.num_prefill and s.draft_ms > 0 else 0
            draft_x.append([rounds + extra, rounds * decoders + extra * s.num_prefill,
                            sum(s.round_widths) + extra * s.prefill_tokens, rounds * ctx])
            draft_y.append(s.draft_ms / 1e3)
        if i in gaps or i == len(trace.steps) - 1:
            other_x.append([1.0, s.batch_size])
            # Draft time with no draft round (prompt lookup's n-gram search) is host work too.
            searched = s.draft_ms if not rounds and not s.num_prefill else 0.0
            other_y.append((s.other_ms + searched) / 1e3 + gaps.get(i, 0.0))
    prefill_x, prefill_y, dprefill_x, dprefill_y = [], [], [], []
    for p in trace.prefills:
        tx, ty = (prefill_x, prefill_y) if apart else (target_x, target_y)
        dx, dy = (dprefill_x, dprefill_y) if apart else (draft_x, draft_y)
        tx.append([1.0, p.num_requests, p.prompt_tokens] + ([] if apart else [0.0]))
        ty.append(p.target_ms / 1e3)
        if p.draft_ms > 0:
            dx.append([1.0, p.num_requests, p.prompt_tokens] + ([] if apart else [0.0]))
            dy.append(p.draft_ms / 1e3)
    as_arrays = lambda x, y, k: (np.asarray(x, dtype=float).reshape(-1, k), np.asarray(y, dtype=float))  # noqa: E731
    out = {"verify": as_arrays(target_x, target_y, 4), "draft": as_arrays(draft_x, draft_y, 4),
           "other": as_arrays(other_x, other_y, 2)}
    if apart:
        out["prefill"] = as_arrays(prefill_x, prefill_y, 3)
        out["draft_prefill"] = as_arrays(dprefill_x, dprefill_y, 3)
    return out


def _admission_features(trace: Trace, other: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The host work around busy admissions, beyond what the step before is charged anyway
    (``other``: the fitted step overhead, which covers a step's own gap to the next)."""
    before_x, before_y, after_y = [], [], []
    for p, before, after in _busy_admissions(trace):
        before_x.append([1.0, p.num_requests])
        before_y.append(p.start_s - before.end_s + before.other_ms / 1e3 - other @ [1.0, before.batch_size])
        after_y.append(after.start_s - p.end_s)
    return {"admit": (np.asarray(before_x, dtype=float).reshape(-1, 2), np.asarray(before_y, dtype=float)),
            "after_prefill": (np.ones((len(after_y), 1)), np.asarray(after_y, dtype=float))}


def fit_cost(trace: Trace) -> tuple[AffineCostModel, list[Component]]:
    """The cost model that best explains the trace's step times, and each component's fit."""
    apart = len(trace.prefills) >= MIN_PREFILLS
    features = _features(trace, apart)
    comps = {}
    for name, (x, y) in features.items():
        coef = robust_fit(x, y)
        comps[name] = Component(name, y, x @ coef if len(y) else y, coef)
    if apart:
        for name, (x, y) in _admission_features(trace, comps["other"].coef).items():
            coef = robust_fit(x, y)
            comps[name] = Component(name, y, x @ coef if len(y) else y, coef)
    t, d, o = (comps[n].coef for n in ("verify", "draft", "other"))
    terms = {}
    if apart:
        p = comps["prefill"].coef
        terms.update(prefill_base_s=float(p[0]), prefill_per_request_s=float(p[1]), prefill_per_token_s=float(p[2]))
        if len(comps["draft_prefill"].measured):  # a method with no draft has no draft prefill to fit
            q = comps["draft_prefill"].coef
            terms.update(draft_prefill_base_s=float(q[0]), draft_prefill_per_request_s=float(q[1]),
                         draft_prefill_per_token_s=float(q[2]))
        a, f = comps["admit"].coef, comps["after_prefill"].coef
        terms.update(admit_base_s=float(a[0]), admit_per_request_s=float(a[1]), after_prefill_s=float(f[0]))
    model = AffineCostModel(
        target_base_s=float(t[0]), target_per_token_s=float(t[2]), draft_base_s=float(d[0]),
        draft_per_token_s=float(d[2]), target_per_context_token_s=float(t[3]),
        draft_per_context_token_s=float(d[3]), target_per_request_s=float(t[1]),
        draft_per_request_s=float(d[1]), step_base_s=float(o[0]), step_per_request_s=float(o[1]), **terms)
    return model, list(comps.values())
