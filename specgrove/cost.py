"""The cost-model interface: how long a step's forwards, host work and transfers take.

Policies that trade tree size against step time (``dynamic-cost``, speculation-aware routing)
ask a ``CostModel`` for the two forward times. The executor supplies one fitted to times it
measured on the running device; the simulator a roofline, or a model calibrated on executor
traces (``specgrove.calibration``). The simulator also charges the remaining terms, which
every model states explicitly (zero where it has none), so nothing a fit found is dropped.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class CostModel(Protocol):
    def target_forward_s(
        self, num_requests: int, num_tokens: int, num_context_tokens: int
    ) -> float:
        """Seconds for one target forward over ``num_tokens`` new tokens (roots and tree
        nodes of ``num_requests`` requests) attending to ``num_context_tokens`` cached ones."""
        ...

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        """Seconds for one draft forward (one tree depth) over ``num_tokens`` new tokens."""
        ...

    def step_overhead_s(self, num_requests: int) -> float:
        """Host seconds per step outside the forwards (acceptance bookkeeping, compaction,
        streaming, scheduling)."""
        ...

    def target_comm_s(self, num_tokens: int) -> float:
        """The tensor-parallel all-reduce share of a target forward (already inside
        ``target_forward_s``; the simulator charges it to the TP link)."""
        ...

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        """Seconds per step to ship candidates to a draft that sits apart and accepted tokens
        back (zero when the draft shares the target's devices)."""
        ...

    def prefill_s(self, num_requests: int, num_tokens: int) -> tuple[float, float]:
        """Seconds of a separate prefill's target forward and draft forward over ``num_tokens``
        prompt tokens of ``num_requests`` new requests (nothing cached yet)."""
        ...

    def admit_s(self, num_requests: int) -> tuple[float, float]:
        """Host seconds around a separate prefill of ``num_requests`` new requests: before it
        (taking them in, on top of the last step's own host work) and after it (before the
        next step starts)."""
        ...


@dataclass(frozen=True)
class AffineCostModel:
    """time = base + per_request * requests + per_token * tokens + per_context_token * cached
    tokens, for each model; the host overhead and the transfers are affine too.

    The simplest model that captures what matters on small batches: a fixed launch/overhead
    cost per forward plus a slope once the forward is wide enough to be compute bound. It is
    what ``specgrove calibrate`` fits to traces.
    """

    target_base_s: float
    target_per_token_s: float
    draft_base_s: float
    draft_per_token_s: float
    target_per_context_token_s: float = 0.0
    draft_per_context_token_s: float = 0.0
    target_per_request_s: float = 0.0
    draft_per_request_s: float = 0.0
    step_base_s: float = 0.0  # host work per step
    step_per_request_s: float = 0.0
    comm_base_s: float = 0.0  # TP all-reduce share of a target forward
    comm_per_token_s: float = 0.0
    transfer_base_s: float = 0.0  # draft apart: per step, both directions
    transfer_per_node_s: float = 0.0
    # A separate prefill's forwards, fitted apart from the decoding steps (a prompt's forward
    # is not a wide verification: on the demo pair a 48-token prefill took 30% longer than the
    # step terms said). None: not fitted apart, and a prefill prices as a forward with nothing
    # cached (``target_forward_s``, ``draft_step_s``).
    prefill_base_s: float | None = None
    prefill_per_request_s: float | None = None
    prefill_per_token_s: float | None = None
    draft_prefill_base_s: float | None = None
    draft_prefill_per_request_s: float | None = None
    draft_prefill_per_token_s: float | None = None
    admit_base_s: float = 0.0  # host work taking new requests in, before their prefill
    admit_per_request_s: float = 0.0
    after_prefill_s: float = 0.0  # host work between a prefill and the next step

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for prefix in ("prefill_", "draft_prefill_"):
            terms = [getattr(self, f"{prefix}{t}") for t in ("base_s", "per_request_s", "per_token_s")]
            if any(t is None for t in terms) and any(t is not None for t in terms):
                raise ValueError(f"{prefix}base_s, {prefix}per_request_s and {prefix}per_token_s go together "
                                 "(all fitted, or all None)")

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.target_base_s
            + self.target_per_request_s * num_requests
            + self.target_per_token_s * num_tokens
            + self.target_per_context_token_s * num_context_tokens
        )

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.draft_base_s
            + self.draft_per_request_s * num_requests
            + self.draft_per_token_s * num_tokens
            + self.draft_per_context_token_s * num_context_tokens
        )

    def step_overhead_s(self, num_requests: int) -> float:
        return self.step_base_s + self.step_per_request_s * num_requests

    def target_comm_s(self, num_tokens: int) -> float:
        return self.comm_base_s + self.comm_per_token_s * num_tokens if num_tokens > 0 else 0.0

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        if not (self.transfer_base_s or self.transfer_per_node_s):
            return 0.0
        return self.transfer_base_s + self.transfer_per_node_s * (num_tree_nodes + num_accepted)

    def scaled(self, factor: float) -> AffineCostModel:
        """Every time multiplied by ``factor`` (a host that runs slower or faster)."""
        if factor == 1:
            return self
        return AffineCostModel(**{k: None if v is None else v * factor for k, v in vars(self).items()})

    def prefill_s(self, num_requests: int, num_tokens: int) -> tuple[float, float]:
        if self.prefill_base_s is None:
            target = self.target_forward_s(num_requests, num_tokens, 0)
        else:
            target = self.prefill_base_s + self.prefill_per_request_s * num_requests + self.prefill_per_token_s * num_tokens
        if self.draft_prefill_base_s is None:
            draft = self.draft_step_s(num_requests, num_tokens, 0)
        else:
            draft = (self.draft_prefill_base_s + self.draft_prefill_per_request_s * num_requests
                     + self.draft_prefill_per_token_s * num_tokens)
        return target, draft

    def admit_s(self, num_requests: int) -> tuple[float, float]:
        return self.admit_base_s + self.admit_per_request_s * num_requests, self.after_prefill_s


@dataclass(frozen=True)
class StepTiming:
    """One engine step as the cost model sees it (seconds; totals over the batch)."""

    num_requests: int
    target_tokens: int  # roots and tree nodes in the verification forward
    context_tokens: int  # cached tokens over the batch
    round_widths: tuple[int, ...]  # expanded nodes per draft round (one draft forward each)
    draft_s: float
    verify_s: float
    other_s: float
    emitted_tokens: int = 0  # tokens the step emitted over the batch
    # Tokens the first draft round fed beyond each request's root: what the draft had not
    # seen yet (a prompt, with a lazy draft prefill; tokens of plain steps). The draft prices
    # them like tree nodes in the round that carried them.
    catch_up_tokens: int = 0
    emitted: tuple[tuple[int, ...], ...] = ()  # each request's emitted tokens, in batch order


class _Ridge:
    """Least squares on relative errors (a 1 ms forward off by 1 ms matters as much as a 100 ms
    one off by 100 ms), with exponential forgetting, pulled toward a prior by pseudo-points
    that decay with the data, and a thousandth of them that never does (so directions the data
    never excites keep the prior's answer)."""

    refit_every = 8  # observations between solves: a decode step is a few ms, a solve 10-40 us; the
    # fit forgets over ~50 steps, so a refit every 8 follows it closely enough

    def __init__(self, prior_points: list[tuple[list[float], float]], forget: float, prior_weight: float) -> None:
        k = len(prior_points[0][0])
        self.forget = forget
        self._unsolved: list[list[float]] = []  # observations (x / y) not yet in a, b
        self.a, self.b = np.zeros((k, k)), np.zeros(k)
        self.a0, self.b0 = np.zeros((k, k)), np.zeros(k)
        w = prior_weight / len(prior_points)  # the prior counts as ``prior_weight`` steps in all
        for x, y in prior_points:
            if not y > 0:
                continue  # a prior without this term (zero) leaves it to the data
            x = np.asarray(x, dtype=float) / y
            self.a0 += w * np.outer(x, x)
            self.b0 += w * x
        self.a, self.b = self.a0.copy(), self.b0.copy()
        self.a0, self.b0 = 1e-3 * self.a0, 1e-3 * self.b0
        # A prior that prices every term makes the normal equations positive definite: a plain
        # solve, a few times cheaper than lstsq's SVD. One with a term it never saw (the step
        # overhead's, when the prior has none) needs lstsq until the data fill it in.
        self._definite = bool(np.linalg.matrix_rank(self.a0) == k)
        self.coef = self.solve()

    def observe(self, x: list[float], y: float) -> None:
        if not y > 0:
            return  # a step too short to time tells nothing about relative error
        # Kept until the next solve, then added in one product: the same sums as adding each
        # as it comes (older ones forgotten more), at a fraction of the per-step cost.
        self._unsolved.append([v / y for v in x])
        if len(self._unsolved) >= self.refit_every:
            self.coef = self.solve()

    def _flush(self) -> None:
        if not self._unsolved:
            return
        x = np.array(self._unsolved)
        m = len(x)
        w = self.forget ** np.arange(m - 1, -1, -1, dtype=float)  # the newest counts fully
        self.a = self.forget ** m * self.a + (x.T * w) @ x
        self.b = self.forget ** m * self.b + x.T @ w
        self._unsolved = []

    def solve(self) -> np.ndarray:
        self._flush()
        a, b = self.a + self.a0, self.b + self.b0
        coef = np.linalg.solve(a, b) if self._definite else np.linalg.lstsq(a, b, rcond=None)[0]
        coef = np.maximum(coef, 0.0)
        self.terms = tuple(coef.tolist())  # for pricing in plain Python (a step prices a few options)
        return coef  # times never shrink with more work

    def price(self, x) -> float:
        """The fitted time of features ``x``."""
        return sum(map(operator.mul, self.terms, x))


class OnlineCostModel:
    """An ``AffineCostModel`` refitted from the engine's own step timings as it runs.

    The prior (the model measured at start-up, outside the engine) enters as pseudo-points over
    the shapes it was measured on; each step then adds one point for the target forward, one
    for the draft rounds (their summed features against the step's draft time) and one for the
    host work, with old steps forgotten geometrically (``forget`` per step). The fit is the one
    ``specgrove calibrate`` does on traces, made incremental: what the policy weighs is time
    inside the engine, packing and bookkeeping included.
    """

    def __init__(self, prior: AffineCostModel, forget: float = 0.98, prior_weight: float = 1.0) -> None:
        p = prior
        grid = [(r, t, c) for r in (1, 4, 16) for t in (1, 16, 64) for c in (64, 1024)]
        self.target = _Ridge([([1, r, r * t, r * c], p.target_forward_s(r, r * t, r * c)) for r, t, c in grid],
                             forget, prior_weight)
        self.draft = _Ridge([([1, r, r * t, r * c], p.draft_step_s(r, r * t, r * c)) for r, t, c in grid],
                            forget, prior_weight)
        self.step = _Ridge([([1, r], p.step_overhead_s(r)) for r in (1, 4, 16)], forget, prior_weight)
        self.prior = prior
        self.num_observed = 0

    def observe(self, t: StepTiming) -> None:
        b, ctx = t.num_requests, t.context_tokens
        self.target.observe([1, b, t.target_tokens, ctx], t.verify_s)
        rounds = len(t.round_widths)
        if rounds:
            self.draft.observe([rounds, rounds * b, sum(t.round_widths) + t.catch_up_tokens, rounds * ctx], t.draft_s)
        self.step.observe([1, b], t.other_s)
        self.num_observed += 1

    def current(self) -> AffineCostModel:
        (tb, tr, tt, tc), (db, dr, dt, dc), (sb, sr) = self.target.coef, self.draft.coef, self.step.coef
        # The terms it does not refit (communication, transfers, prefills) stay the prior's.
        return replace(self.prior, target_base_s=tb, target_per_token_s=tt, draft_base_s=db, draft_per_token_s=dt,
                       target_per_context_token_s=tc, draft_per_context_token_s=dc, target_per_request_s=tr,
                       draft_per_request_s=dr, step_base_s=sb, step_per_request_s=sr)

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self.target.price((1, num_requests, num_tokens, num_context_tokens))

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self.draft.price((1, num_requests, num_tokens, num_context_tokens))

    def step_overhead_s(self, num_requests: int) -> float:
        return self.step.price((1, num_requests))

    def target_comm_s(self, num_tokens: int) -> float:
        return self.prior.target_comm_s(num_tokens)

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        return self.prior.transfer_s(num_tree_nodes, num_accepted)

    def prefill_s(self, num_requests: int, num_tokens: int) -> tuple[float, float]:
        return self.prior.prefill_s(num_requests, num_tokens)

    def admit_s(self, num_requests: int) -> tuple[float, float]:
        return self.prior.admit_s(num_requests)
