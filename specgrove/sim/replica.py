"""One replica: admit from its queue, run one batched draft+verify step, apply the outcome.

Each step is one SimPy timeout for the whole batch (one event per step, never per token).
The replica's GPUs are a SimPy resource held for the step; a draft that sits apart has its
own GPU resource and a link resource for shipping candidates. A replica with nothing to do
waits on an event that the next routed arrival triggers; it never polls.
"""

from __future__ import annotations

import numpy as np
import simpy

from specgrove.sim.batch import Batch, RequestRecord
from specgrove.types import Request


class Replica:
    def __init__(self, cluster, placement, scheduler) -> None:
        self.c, self.placement, self.scheduler = cluster, placement, scheduler
        env = cluster.env
        self.id = placement.replica_id
        # A TP group's GPUs are always taken together, so one resource stands for the group.
        self.gpus = simpy.Resource(env, 1)
        self.draft_gpus = simpy.Resource(env, 1) if placement.draft_gpus else None
        self.draft_link = simpy.Resource(env, 1) if placement.draft_gpus else None
        self.batch = Batch()
        self.waiting: list[Request] = []
        self.requests: dict[int, Request] = {}
        self.wake: simpy.Event | None = None
        self.outstanding_tokens = 0
        self.tau_ema = cluster.expected_tau
        self.step_ema = cluster.cost.target_forward_s(1, cluster.scenario.policies.tree_budget + 1, 0)
        self.busy_s = {"gpu": 0.0, "draft_gpu": 0.0, "tp_link": 0.0, "draft_link": 0.0}
        self.num_steps = 0
        env.process(self.run())

    # -- arrivals -----------------------------------------------------------------------
    def submit(self, request: Request) -> None:
        self.waiting.append(request)
        self.requests[request.request_id] = request
        self.outstanding_tokens += request.max_new_tokens
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    # -- admission and preemption -----------------------------------------------------------
    def _need(self) -> np.ndarray:
        """KV tokens each running request needs for the next step."""
        b = self.batch
        if not self.scheduler.preempt:
            return b.reserved
        return b.ctx + b.prefill + self.c.tree_budget + 1

    def _admit(self, now: float) -> None:
        b, cap = self.batch, self.c.kv_capacity
        free_slots = self.c.max_batch - len(b)
        if not self.waiting or free_slots <= 0:
            return
        used = int(self._need().sum())
        rows, taken = [], set()
        for i in self.scheduler.order(self.waiting, now):
            if len(rows) == free_slots:
                break
            r = self.waiting[i]
            reserve = r.prompt_tokens + r.max_new_tokens + self.c.tree_budget + 1
            need = reserve if not self.scheduler.preempt else r.context_len + self.c.tree_budget + 1
            if reserve > cap:  # can never run here, even alone
                self.c.reject(r, self.id)
                taken.add(i)
                continue
            if used + need > cap:
                break  # admit strictly in policy order: no overtaking by smaller requests
            used += need
            taken.add(i)
            rec = self.c.records[r.request_id]
            if np.isnan(rec.admitted_s):
                rec.admitted_s = now
            rows.append({"rid": r.request_id, "left": r.remaining_tokens, "prefill": r.context_len,
                         "dom": self.c.domain_index[r.domain], "reserved": reserve})
        if taken:
            self.waiting = [r for i, r in enumerate(self.waiting) if i not in taken]
            self.batch.append(rows)

    def _preempt(self, now: float) -> None:
        b = self.batch
        while len(b) > 1 and int(self._need().sum()) > self.c.kv_capacity:
            running = [self.requests[int(rid)] for rid in b.rid]
            for req, left in zip(running, b.left.tolist()):
                req.num_generated = req.max_new_tokens - left
            i = self.scheduler.victim(running, now)
            rec = self.c.records[running[i].request_id]
            rec.preemptions += 1
            rec.leave_batch(b.row(i), self.num_steps)
            self.waiting.append(running[i])  # recomputed on readmission (prefill of prompt + generated)
            mask = np.ones(len(b), dtype=bool)
            mask[i] = False
            b.keep(mask)

    # -- the step ------------------------------------------------------------------------
    def run(self):
        env = self.c.env
        held = None  # the replica holds its GPUs from waking until it parks again
        while True:
            if not len(self.batch) and not self.waiting:
                if held is not None:
                    self.gpus.release(held)
                    held = None
                self.wake = env.event()
                yield self.wake
                self.wake = None
            self._admit(env.now)
            if self.scheduler.preempt:
                self._preempt(env.now)
            if not len(self.batch):
                continue  # everything waiting was rejected
            plan = self.c.planner.plan(self.batch)
            if self.draft_gpus is None:
                if held is None:
                    held = self.gpus.request()
                    yield held
                yield env.timeout(plan.draft_s + plan.verify_s)
            else:
                with self.draft_gpus.request() as hold:
                    yield hold
                    yield env.timeout(plan.draft_s)
                with self.draft_link.request() as hold:
                    yield hold
                    yield env.timeout(plan.transfer_s)
                with self.gpus.request() as hold:
                    yield hold
                    yield env.timeout(plan.verify_s)
            self._account(plan)
            self._apply(plan, env.now)

    def _account(self, plan) -> None:
        self.num_steps += 1
        busy = self.busy_s
        if self.draft_gpus is None:
            busy["gpu"] += plan.draft_s + plan.verify_s
        else:
            busy["gpu"] += plan.verify_s
            busy["draft_gpu"] += plan.draft_s
            busy["draft_link"] += plan.transfer_s
        busy["tp_link"] += plan.comm_s
        self.step_ema += 0.05 * (plan.draft_s + plan.verify_s + plan.transfer_s - self.step_ema)

    def _apply(self, plan, now: float) -> None:
        b = self.batch
        emitted = plan.emitted
        if plan.num_decoding == len(b):  # the common case: everyone decoding, no masks
            b.grow(emitted, plan.num_emitted)
        else:
            for rid in b.rid[plan.is_prefill].tolist():
                rec = self.c.records[rid]
                if np.isnan(rec.first_token_s):
                    rec.first_token_s = now
            b.finish_prefill(plan.is_prefill, emitted, self.num_steps)
        total = plan.num_emitted
        self.outstanding_tokens -= total
        self.c.tokens_emitted += total
        if plan.num_decoding:
            tau = (total - (len(b) - plan.num_decoding)) / plan.num_decoding  # prefills emit 1 each
            self.tau_ema += 0.05 * (tau - self.tau_ema)
        if b.left.min() <= 0:
            done = b.left <= 0
            for i in np.flatnonzero(done).tolist():
                row = b.row(i)
                self.c.records[row["rid"]].leave_batch(row, self.num_steps)
                self.c.finish(row["rid"], now)
                del self.requests[row["rid"]]
            b.keep(~done)
