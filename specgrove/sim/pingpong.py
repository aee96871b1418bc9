"""A separate draft overlapping the target: two micro-batches in ping-pong.

With ``draft_placement = "separate"`` and ``microbatches = 2`` a replica's running requests
are split into two micro-batches. Each cycles, as its own SimPy process,

    admit -> draft (draft GPU) -> transfer (draft link) -> verify (target GPUs) -> apply

and the two contend for the draft GPU, the link and the target GPUs as SimPy resources
(first come, first served; SimPy's event order breaks ties, so runs are deterministic). In
steady state one micro-batch drafts while the other verifies. Each step is planned on its
micro-batch alone, and is still one timeout per resource, never per token.

A request admitted at one micro-batch's cycle start joins the micro-batch with fewer requests
(ties to micro-batch 0). If that is the other one, which may be mid-step, the request waits
in its ``pending`` rows (its KV already reserved) and joins at that micro-batch's next cycle
start; a parked micro-batch is woken for it.

``Overlap`` measures what the overlap buys: the time the draft GPU and the target GPUs were
busy at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from specgrove.sim.running_batch import RunningBatch

if TYPE_CHECKING:
    from specgrove.sim.replica import Replica


@dataclass
class MicroBatch:
    """One micro-batch of a replica (a replica that does not ping-pong has exactly one)."""

    index: int
    batch: RunningBatch = field(default_factory=RunningBatch)
    pending: list[dict] = field(default_factory=list)  # admitted, joining at the next cycle start
    wake: simpy.Event | None = None  # set while parked: nothing to run until an arrival
    steps: int = 0  # this micro-batch's steps (a request's tau counts the steps it took part in)

    def __len__(self) -> int:
        return len(self.batch) + len(self.pending)

    def merge_pending(self) -> None:
        if self.pending:
            self.batch.append(self.pending)
            self.pending = []

    def rouse(self) -> None:
        """Wake the micro-batch if it is parked."""
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()


def assign(rows: list[dict], micro: list[MicroBatch], here: MicroBatch) -> None:
    """Each new row joins the micro-batch with fewer requests (ties to the lower index): rows
    for ``here`` (at its cycle start) join its batch at once, the others' wait in ``pending``."""
    counts = [len(m) for m in micro]
    mine = []
    for row in rows:
        k = counts.index(min(counts))
        counts[k] += 1
        if micro[k] is here:
            mine.append(row)
        else:
            micro[k].pending.append(row)
            micro[k].rouse()
    if mine:
        here.batch.append(mine)


class Overlap:
    """Seconds during which the draft GPU and the target GPUs were both busy.

    Each resource serves one step at a time, so its busy intervals are disjoint and start in
    time order. An interval can only overlap the other resource's latest interval that started
    no later than it; counting each overlap when the later of the two starts counts it once."""

    def __init__(self) -> None:
        self.last = {"draft_gpu": (0.0, 0.0), "gpu": (0.0, 0.0)}
        self.both_s = 0.0

    def busy(self, which: str, start: float, duration: float) -> None:
        end = start + duration
        o_start, o_end = self.last["gpu" if which == "draft_gpu" else "draft_gpu"]
        both = min(end, o_end) - max(start, o_start)
        if both > 0:
            self.both_s += both
        self.last[which] = (start, end)


def cycle(replica: Replica, mb: MicroBatch):
    """The SimPy process of one micro-batch: one timeout per resource per step."""
    env, overlap = replica.env, replica.overlap
    while True:
        mb.merge_pending()
        replica._admit(env.now, mb)
        if replica.scheduler.preempt:
            replica._preempt(env.now, mb)
        if not len(mb.batch):  # nothing here; an arrival or the other micro-batch wakes it
            mb.wake = env.event()
            yield mb.wake
            mb.wake = None
            continue
        if replica.setup.separate_prefill and mb.batch.num_prefill:
            yield from replica.prefill(mb)
            if not len(mb.batch):
                continue
        plan = replica.planner.plan(mb.batch)
        started = env.now
        yield from replica.separate_step(plan, overlap)
        replica.busy_s["overlap"] = overlap.both_s
        # A request steps once per cycle of its micro-batch, waits for the other's included.
        replica._account(plan, mb, env.now - started)
        if replica.on_trace is not None:
            replica._trace(plan, mb, started, env.now)
        replica._apply(plan, mb, env.now)
