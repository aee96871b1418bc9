"""Router policies: which replica a new request goes to.

A router sees the request and one ``ReplicaLoad`` snapshot per replica (plain numbers, the
same in the executor and the simulator) and returns a replica id. Randomised routers take a
seeded ``numpy.random.Generator``, so a run is reproducible. Ties go to the lower replica id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from specgrove.registry import register
from specgrove.types import Request


@dataclass(frozen=True)
class ReplicaLoad:
    replica_id: int
    num_requests: int  # running plus waiting
    outstanding_tokens: int  # tokens still to generate, running plus waiting
    expected_tokens_per_step: float = 1.0  # tau: emitted tokens per verification step
    step_s: float = 1.0  # recent (or estimated) seconds per verification step


class Router:
    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def route(self, request: Request, loads: Sequence[ReplicaLoad]) -> int:
        raise NotImplementedError


def _argmin(loads: Sequence[ReplicaLoad], key) -> int:
    return min(loads, key=lambda l: (key(l), l.replica_id)).replica_id


@register("router", "round-robin")
class RoundRobin(Router):
    """Round robin: replicas in turn, blind to load."""

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        super().__init__(rng)
        self.next = 0

    def route(self, request: Request, loads: Sequence[ReplicaLoad]) -> int:
        chosen = loads[self.next % len(loads)].replica_id
        self.next += 1
        return chosen


@register("router", "least-outstanding")
class LeastOutstanding(Router):
    """Least outstanding tokens: the replica with the fewest tokens left to generate."""

    def route(self, request: Request, loads: Sequence[ReplicaLoad]) -> int:
        return _argmin(loads, lambda l: l.outstanding_tokens)


@register("router", "power-of-two")
class PowerOfTwo(Router):
    """Power of two choices: sample two replicas, take the one with fewer outstanding tokens."""

    def route(self, request: Request, loads: Sequence[ReplicaLoad]) -> int:
        if len(loads) == 1:
            return loads[0].replica_id
        picks = self.rng.choice(len(loads), size=2, replace=False)
        return _argmin([loads[int(i)] for i in picks], lambda l: l.outstanding_tokens)


@register("router", "speculation-aware")
class SpeculationAware(Router):
    """Speculation-aware: least expected verification time, outstanding tokens over tau."""

    def route(self, request: Request, loads: Sequence[ReplicaLoad]) -> int:
        # A replica that accepts more per step drains the same backlog in fewer verification
        # forwards; including the new request's own tokens breaks ties by how fast it'd finish.
        def work_s(l: ReplicaLoad) -> float:
            steps = (l.outstanding_tokens + request.max_new_tokens) / max(l.expected_tokens_per_step, 1e-9)
            return steps * l.step_s

        return _argmin(loads, work_s)
