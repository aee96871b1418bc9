"""One replica: admit from its queue, run one batched draft+verify step, apply the outcome.

Each step is one SimPy timeout for the whole batch (one event per step, never per token).
The replica's GPUs are a SimPy resource held for the step; a separate draft has its own GPU
resource and a link resource for shipping candidates. A replica with nothing to do waits on
an event that the next routed arrival triggers; it never polls.

The running requests live in micro-batches (``pingpong.MicroBatch``): one, stepped by ``run``
(draft, transfer, verify in turn), unless a separate draft overlaps the target with two in
ping-pong (``pingpong.cycle``, one process each); admission, preemption and the outcome of a
step are the same code for both.

A replica gets everything it reads at construction (``ReplicaSetup``, the shared planner and
``Ledger``) and reports its load through ``load()``; nothing outside edits its state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from specgrove.policies.router import ReplicaLoad
from specgrove.sim.hardware import Placement
from specgrove.sim.pingpong import MicroBatch, Overlap, assign, cycle
from specgrove.sim.planner import Planner, StepPlan
from specgrove.sim.records import Ledger
from specgrove.trace import PrefillRecord, Record, RequestShare, RequestTimes, StepRecord
from specgrove.types import Request


@dataclass(frozen=True)
class ReplicaSetup:
    """What every replica of a run shares: limits, the tree budget, and first estimates."""

    max_batch: int
    kv_capacity_tokens: int
    tree_budget: int  # nodes per request per step (KV headroom for a step's tree)
    domain_index: dict[str, int]
    expected_tau: float  # tokens per step, until measured
    expected_step_s: float  # seconds per step, until measured
    microbatches: int = 1  # with a separate draft: 2 ping-pong (draft of one overlaps verify of the other)
    separate_prefill: bool = False  # new prompts in forwards of their own before the step (the executor's way)


class Replica:
    def __init__(self, env: simpy.Environment, placement: Placement, scheduler, planner: Planner,
                 setup: ReplicaSetup, ledger: Ledger, on_trace: Callable[[Record], None] | None = None) -> None:
        self.env, self.placement, self.scheduler = env, placement, scheduler
        self.planner, self.setup, self.ledger = planner, setup, ledger
        self.on_trace = on_trace  # gets the executor's trace records (specgrove.trace), simulated
        self.id = placement.replica_id
        # A TP group's GPUs are always taken together, so one resource stands for the group.
        self.gpus = simpy.Resource(env, 1)
        self.draft_gpus = simpy.Resource(env, 1) if placement.draft_gpus else None
        self.draft_link = simpy.Resource(env, 1) if placement.draft_gpus else None
        pingpong = bool(placement.draft_gpus) and setup.microbatches > 1
        self.micro = [MicroBatch(i) for i in range(setup.microbatches if pingpong else 1)]
        self.waiting: list[Request] = []
        self.requests: dict[int, Request] = {}
        self.outstanding_tokens = 0
        self.tau_ema = setup.expected_tau
        self.step_ema = setup.expected_step_s
        # "overlap": seconds the draft GPU and the target GPUs were busy at once
        self.busy_s = {"gpu": 0.0, "draft_gpu": 0.0, "tp_link": 0.0, "draft_link": 0.0, "overlap": 0.0}
        self.overlap = Overlap() if pingpong else None
        self.num_steps = 0  # the replica's steps, over all its micro-batches
        self.series = None  # a ``records.Series`` sampled at each step's end (set by ``sim.api``)
        if pingpong:
            for mb in self.micro:
                env.process(cycle(self, mb))
        else:
            env.process(self.run())

    # -- arrivals and the load report ---------------------------------------------------
    def submit(self, request: Request) -> None:
        self.waiting.append(request)
        self.requests[request.request_id] = request
        self.outstanding_tokens += request.max_new_tokens
        for mb in self.micro:
            mb.rouse()

    @property
    def num_running(self) -> int:
        return sum(len(mb) for mb in self.micro)

    def load(self) -> ReplicaLoad:
        """The snapshot a router sees."""
        return ReplicaLoad(self.id, self.num_running + len(self.waiting), self.outstanding_tokens,
                           self.tau_ema, self.step_ema)

    @property
    def is_parked(self) -> bool:
        """Every micro-batch waiting on its wake event: nothing to do until an arrival."""
        return all(mb.wake is not None for mb in self.micro)

    # -- admission and preemption -----------------------------------------------------------
    def _need(self) -> np.ndarray:
        """KV tokens each running request (every micro-batch's, pending ones too) needs for
        the next step."""
        if len(self.micro) == 1:
            return self._batch_need(self.micro[0].batch)
        parts = [self._batch_need(mb.batch) for mb in self.micro]
        parts += [np.array([self._row_need(r) for r in mb.pending], dtype=np.int64) for mb in self.micro]
        return np.concatenate(parts)

    def _batch_need(self, b) -> np.ndarray:
        if not self.scheduler.preempt:
            return b.reserved
        return b.ctx + b.prefill + self.setup.tree_budget + 1

    def _row_need(self, row: dict) -> int:
        """``_batch_need`` of a pending row (admitted, not yet in its micro-batch)."""
        return row["reserved"] if not self.scheduler.preempt else row["prefill"] + self.setup.tree_budget + 1

    def _reject(self, req: Request, reserve: int) -> None:
        self.ledger.reject(req.request_id, "kv_capacity",
                           f"needs {reserve} KV tokens; a replica holds {self.setup.kv_capacity_tokens}")
        self.outstanding_tokens -= req.remaining_tokens

    def _admit(self, now: float, mb: MicroBatch) -> None:
        """Admit in policy order into micro-batch ``mb`` (at its step boundary) or, when
        there are two, into whichever has fewer requests (``pingpong.assign``)."""
        setup = self.setup
        cap = setup.kv_capacity_tokens
        free_slots = setup.max_batch - self.num_running
        if not self.waiting or free_slots <= 0:
            return
        used = int(self._need().sum())
        rows, taken = [], set()
        for i in self.scheduler.order(self.waiting, now):
            if len(rows) == free_slots:
                break
            r = self.waiting[i]
            reserve = r.prompt_tokens + r.max_new_tokens + setup.tree_budget + 1
            need = reserve if not self.scheduler.preempt else r.context_len + setup.tree_budget + 1
            if reserve > cap:  # can never run here, even alone
                self._reject(r, reserve)
                taken.add(i)
                continue
            if used + need > cap:
                break  # admit strictly in policy order: no overtaking by smaller requests
            used += need
            taken.add(i)
            self.ledger.admit(r.request_id, now)
            rows.append({"rid": r.request_id, "left": r.remaining_tokens, "prefill": r.context_len,
                         "prompt": r.prompt_tokens, "dom": setup.domain_index[r.domain], "reserved": reserve})
        if taken:
            self.waiting = [r for i, r in enumerate(self.waiting) if i not in taken]
            if len(self.micro) == 1:
                mb.batch.append(rows)
            else:
                assign(rows, self.micro, mb)

    def _preempt(self, now: float, mb: MicroBatch) -> None:
        """Evict the scheduler's victims from ``mb`` while KV overflows, keeping one request.
        With two micro-batches only ``mb``'s own go (the other's are mid-step), its last one
        too if the other still holds requests: the replica, not each half, keeps one."""
        b = mb.batch
        while len(b) > 1 and int(self._need().sum()) > self.setup.kv_capacity_tokens:
            self._evict(mb, now)
        if len(b) == 1 and self.num_running > 1 and int(self._need().sum()) > self.setup.kv_capacity_tokens:
            self._evict(mb, now)

    def _evict(self, mb: MicroBatch, now: float) -> None:
        b = mb.batch
        running = [self.requests[int(rid)] for rid in b.rid]
        for req, left in zip(running, b.left.tolist()):
            req.num_generated = req.max_new_tokens - left
        i = self.scheduler.victim(running, now)
        rec = self.ledger.records[running[i].request_id]
        rec.preemptions += 1
        rec.leave_batch(b.row(i), mb.steps)
        self.waiting.append(running[i])  # recomputed on readmission (prefill of prompt + generated)
        mask = np.ones(len(b), dtype=bool)
        mask[i] = False
        b.keep(mask)

    # -- the step ------------------------------------------------------------------------
    def run(self):
        """One micro-batch: draft, transfer (separate draft) and verify in turn."""
        env, mb = self.env, self.micro[0]
        held = None  # the replica holds its GPUs from waking until it parks again
        while True:
            if not len(mb.batch) and not self.waiting:
                if held is not None:
                    self.gpus.release(held)
                    held = None
                mb.wake = env.event()
                yield mb.wake
                mb.wake = None
            self._admit(env.now, mb)
            if self.scheduler.preempt:
                self._preempt(env.now, mb)
            if not len(mb.batch):
                continue  # everything waiting was rejected
            if self.draft_gpus is None and held is None:
                held = self.gpus.request()
                yield held
            if self.setup.separate_prefill and mb.batch.num_prefill:
                yield from self.prefill(mb)
                if not len(mb.batch):
                    continue  # every new request ended at its first token
            plan = self.planner.plan(mb.batch)
            started = env.now
            if self.draft_gpus is None:
                yield env.timeout(plan.draft_s + plan.verify_s + plan.other_s)
            else:
                yield from self.separate_step(plan)
            self._account(plan, mb)
            if self.on_trace is not None:
                self._trace(plan, mb, started, env.now)
            self._apply(plan, mb, env.now)

    def prefill(self, mb: MicroBatch):
        """Separate prefill: the newly admitted prompts in one target forward, then one draft
        forward, before the step (the executor's ``admit``). Their first tokens come out at
        its end, and they decode in the step that follows. A colocated replica already holds
        its GPUs; with a separate draft each forward holds its own model's GPUs."""
        env, b = self.env, mb.batch
        new = b.prefill > 0
        num_new, tokens = int(np.count_nonzero(new)), int(b.prefill[new].sum())
        target_s, draft_s = self.planner.prefill_s(num_new, tokens)
        before_s, after_s = self.planner.cost.admit_s(num_new)
        if before_s > 0:  # host work taking them in (the replica's loop: its GPUs wait)
            yield env.timeout(before_s)
            self.busy_s["gpu"] += before_s if self.draft_gpus is None else 0.0
        start = env.now
        if self.draft_gpus is None:
            yield env.timeout(target_s + draft_s)
            self.busy_s["gpu"] += target_s + draft_s
        else:
            with self.gpus.request() as hold:
                yield hold
                yield env.timeout(target_s)
            with self.draft_gpus.request() as hold:
                yield hold
                yield env.timeout(draft_s)
            self.busy_s["gpu"] += target_s
            self.busy_s["draft_gpu"] += draft_s
        now = env.now
        for rid in b.rid[new].tolist():
            self.ledger.first_token(rid, now)
        b.finish_prefill(new, new.astype(np.int64), mb.steps)
        self.outstanding_tokens -= num_new
        self.ledger.tokens_emitted += num_new
        if self.on_trace is not None:
            self.on_trace(PrefillRecord(self.num_steps + 1, start, now, num_new, tokens, target_s * 1e3, draft_s * 1e3))
        self._finish_done(mb, now)
        if after_s > 0:  # host work before the next step (first tokens are already out)
            yield env.timeout(after_s)
            self.busy_s["gpu"] += after_s if self.draft_gpus is None else 0.0

    def separate_step(self, plan: StepPlan, overlap=None):
        """One step with the draft on its own GPU: draft, ship the candidates over the link,
        verify. Each part holds only its own resource, so another micro-batch's parts can run
        beside it; ``overlap`` (ping-pong's ``Overlap``) is told when each GPU starts."""
        env = self.env
        with self.draft_gpus.request() as hold:
            yield hold
            if overlap is not None:
                overlap.busy("draft_gpu", env.now, plan.draft_s)
            yield env.timeout(plan.draft_s)
        with self.draft_link.request() as hold:
            yield hold
            yield env.timeout(plan.transfer_s)
        with self.gpus.request() as hold:
            yield hold
            if overlap is not None:
                overlap.busy("gpu", env.now, plan.verify_s + plan.other_s)
            yield env.timeout(plan.verify_s + plan.other_s)

    def _account(self, plan: StepPlan, mb: MicroBatch, step_s: float | None = None) -> None:
        """Busy times and the step-time estimate; ``step_s``: the step's wall time when it
        is not the sum of its parts (micro-batches waiting on each other)."""
        self.num_steps += 1
        mb.steps += 1
        busy = self.busy_s
        if self.draft_gpus is None:
            busy["gpu"] += plan.draft_s + plan.verify_s + plan.other_s
        else:
            busy["gpu"] += plan.verify_s + plan.other_s
            busy["draft_gpu"] += plan.draft_s
            busy["draft_link"] += plan.transfer_s
        busy["tp_link"] += plan.comm_s
        if step_s is None:
            step_s = plan.draft_s + plan.verify_s + plan.transfer_s + plan.other_s
        self.step_ema += 0.05 * (step_s - self.step_ema)
        if self.series is not None:
            self.series.sample(self, mb, plan)

    def _trace(self, plan: StepPlan, mb: MicroBatch, start_s: float, end_s: float) -> None:
        """This step as the executor would have traced it (before ``_apply`` moves the batch)."""
        b = mb.batch
        dec = np.ones(len(b), dtype=bool) if plan.is_prefill is None else ~plan.is_prefill
        out, shares = plan.outcome, []
        if out is not None:
            rids, ctx, emitted = b.rid[dec].tolist(), b.ctx[dec].tolist(), plan.emitted[dec].tolist()
            for i, (rid, c, e) in enumerate(zip(rids, ctx, emitted)):
                if out.trees is not None:
                    tree, path = out.trees[i], out.paths[i]
                    order = out.lookup_orders[i] if out.lookup_orders else -1
                    shares.append(RequestShare(rid, c, len(tree), tree.depth, len(path), e, tuple(tree.parents.tolist()),
                                               tuple(tree.probs.tolist()), tuple(path), order))
                else:
                    shares.append(RequestShare(rid, c, int(out.tree_sizes[i]), 0, int(out.emitted[i]) - 1, e))
        widths = [w for count, w in (out.draft_rounds if out is not None else []) for _ in range(count)]
        num_prefill = len(b) - plan.num_decoding
        self.on_trace(StepRecord(
            self.num_steps, start_s, end_s, len(b), plan.tokens, plan.context_tokens, len(widths),
            tuple(int(round(w)) for w in widths), plan.draft_s * 1e3, plan.verify_s * 1e3, plan.other_s * 1e3,
            tuple(shares), num_prefill=num_prefill,
            prefill_tokens=int(b.prefill[~dec].sum()) if num_prefill else 0))

    def _apply(self, plan: StepPlan, mb: MicroBatch, now: float) -> None:
        b = mb.batch
        emitted = plan.emitted
        if plan.num_decoding == len(b):  # the common case: everyone decoding, no masks
            b.grow(emitted, plan.num_emitted)
        else:
            for rid in b.rid[plan.is_prefill].tolist():
                self.ledger.first_token(rid, now)
            b.finish_prefill(plan.is_prefill, emitted, mb.steps)
        total = plan.num_emitted
        self.outstanding_tokens -= total
        self.ledger.tokens_emitted += total
        if plan.num_decoding:
            tau = (total - (len(b) - plan.num_decoding)) / plan.num_decoding  # prefills emit 1 each
            self.tau_ema += 0.05 * (tau - self.tau_ema)
        self._finish_done(mb, now)

    def _finish_done(self, mb: MicroBatch, now: float) -> None:
        """Requests that have emitted all their tokens leave the batch."""
        b = mb.batch
        if len(b) and b.left.min() <= 0:
            done = b.left <= 0
            for i in np.flatnonzero(done).tolist():
                row = b.row(i)
                rec = self.ledger.records[row["rid"]]
                rec.leave_batch(row, mb.steps)
                self.ledger.finish(row["rid"], now)
                if self.on_trace is not None:
                    self.on_trace(RequestTimes(rec.request_id, rec.prompt_tokens, rec.output_tokens, rec.arrival_s,
                                               rec.admitted_s, rec.first_token_s, rec.finish_s, rec.domain))
                del self.requests[row["rid"]]
            b.keep(~done)
