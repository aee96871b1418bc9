"""Scheduler policies: which waiting requests join a replica's batch, and whom to preempt.

A scheduler sees plain ``Request`` snapshots and answers with indices. ``order`` ranks the
waiting queue for admission; the replica admits in that order while batch slots and KV
memory last. With ``preempt=True`` a replica reserves KV only for what a request holds now,
so memory can run out mid-generation; it then evicts ``victim`` (the request the policy
values least, re-queued and recomputed later, as vLLM does). With ``preempt=False`` a request
reserves its worst case at admission, so it never has to be evicted and others wait instead.

Ties fall to the lower ``request_id``: decisions never depend on list order or hashing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from specgrove.registry import register
from specgrove.types import Request


class Scheduler:
    def __init__(self, preempt: bool = False) -> None:
        self.preempt = bool(preempt)

    def key(self, request: Request, now_s: float) -> tuple:
        raise NotImplementedError

    def order(self, waiting: Sequence[Request], now_s: float) -> list[int]:
        """Indices of ``waiting`` in admission order (best first)."""
        return sorted(range(len(waiting)), key=lambda i: (self.key(waiting[i], now_s), waiting[i].request_id))

    def victim(self, running: Sequence[Request], now_s: float) -> int:
        """Index of the running request to preempt when memory runs out (the worst ranked)."""
        return max(range(len(running)), key=lambda i: (self.key(running[i], now_s), running[i].request_id))


@register("scheduler", "fcfs")
class FirstComeFirstServed(Scheduler):
    """First come, first served: admit by arrival time; preempt the latest arrival."""

    def key(self, request: Request, now_s: float) -> tuple:
        return (request.arrival_s,)


@register("scheduler", "sjf")
class ShortestJobFirst(Scheduler):
    """Shortest job first: admit the request with the fewest expected remaining tokens."""

    def key(self, request: Request, now_s: float) -> tuple:
        return (request.remaining_tokens, request.arrival_s)


@register("scheduler", "edf")
class EarliestDeadlineFirst(Scheduler):
    """Earliest deadline first: admit the request whose SLO deadline comes soonest."""

    def key(self, request: Request, now_s: float) -> tuple:
        deadline = math.inf if request.deadline_s is None else request.deadline_s
        return (deadline, request.arrival_s)
