"""The draft on a rank of its own: rank 0's stand-in (``RemoteDraft``) and the draft's loop
(``DraftServer``).

Rank 0's engine calls the draft-side interface of ``executor.draft_side``; ``RemoteDraft``
buffers what happened (outcomes, departures, admissions) and sends it with the next request
for trees, one message per micro-batch step (``wire``). The draft rank keeps a mirror of each
request's draft-side state, applies the message in the order rank 0 lived it (outcomes of the
last proposal, then departures, which compact the rows the way rank 0 did, then admissions),
runs the same ``LocalDraft`` a single process would, and answers with the selected trees.
``launch`` and ``collect`` split the round trip, so rank 0 can verify one micro-batch while
the draft grows the other's trees.
"""

from __future__ import annotations

import time

import numpy as np

from specgrove.cost import StepTiming
from specgrove.executor.draft_side import LocalDraft
from specgrove.executor.parallel import wire
from specgrove.executor.request_state import RequestState
from specgrove.executor.sampling import SamplingParams
from specgrove.policies.speculation import Speculation
from specgrove.tree import Tree


class DraftLink:
    """Rank 0's end of the wire to the draft rank, shared by the micro-batches (one FIFO)."""

    def __init__(self, ranks, draft_rank: int) -> None:
        self.ranks, self.draft_rank = ranks, draft_rank
        self.traffic = wire.Traffic()
        self._pending: list = []  # started sends: (work, tensor), oldest first

    def send(self, payload) -> None:
        self.traffic.bytes_out += wire.send(payload, self.draft_rank, self.ranks.control, self.ranks.data,
                                            self._pending)
        self.traffic.messages_out += 1

    def _settle(self) -> None:
        """Wait for the sends the draft rank has taken in (it takes them in order)."""
        while self._pending and self._pending[0][0].is_completed():
            self._pending.pop(0)[0].wait()

    def recv(self):
        t0 = time.perf_counter()
        # Replies come within a step: the data group's timeout bounds a draft rank that hangs.
        payload = wire.recv(self.draft_rank, self.ranks.data, self.ranks.data)
        self.traffic.wait_s += time.perf_counter() - t0
        self.traffic.bytes_in += 4 + payload.numel() * 4
        self.traffic.messages_in += 1
        self._settle()
        return payload

    def stop(self) -> None:
        self.send(wire.Writer().ints(wire.STOP, 0, 0, 0, 0).tensor())
        while self._pending:
            self._pending.pop(0)[0].wait()


class RemoteDraft:
    """One micro-batch's draft side, as rank 0 sees it."""

    def __init__(self, link: DraftLink, lane: int, max_positions: int, vocab_size: int,
                 observes: bool = False) -> None:
        self.link, self.lane = link, lane
        self.observes = observes  # the policy learns from step timings: send them
        self.max_positions, self.vocab_size = max_positions, vocab_size
        self._done: list[int] = []
        self._outcomes: list[tuple[list[int], int]] = []
        self._timing = None  # the last step's StepTiming, sent with its outcomes
        self._admits: list[RequestState] = []
        self.in_flight: list[int] | None = None  # request ids of the proposal asked for

    def prefill(self, seqs: list[RequestState]) -> None:
        self._admits += seqs

    def retire(self, request_ids: list[int]) -> None:
        # A request can leave before the draft heard of it (done at its first token): then it
        # is never sent, and the admissions after it are sent at the rows they hold by then.
        gone = set(request_ids)
        known = [s.request_id for s in self._admits]
        self._admits = [s for s in self._admits if s.request_id not in gone]
        self._done += [rid for rid in request_ids if rid not in known]

    def move_row(self, seq: RequestState, new_row: int) -> None:
        """The draft rank compacts its rows itself, as rank 0 does, when it hears who left."""

    def commit(self, seqs: list[RequestState], spec: Speculation, outcomes) -> None:
        self._outcomes = [(list(tokens), n) for tokens, n in outcomes]

    def observe_step(self, timing) -> None:
        """Sent with the step's outcomes: the draft rank's policy made the step's decisions and
        learns from its timing (without it, ``dynamic-cost`` there never finished timing plain
        decoding, and never speculated)."""
        self._timing = timing

    def launch(self, seqs: list[RequestState]) -> None:
        """Send what happened since the last proposal and ask for ``seqs``' trees."""
        w = wire.Writer().ints(self.lane, 1, len(self._done), len(self._outcomes), len(self._admits))
        w.array(self._done)
        for tokens, n in self._outcomes:
            w.ints(n, len(tokens)).array(tokens)
        if self._outcomes and self.observes:  # the step's timing (its emitted tokens are the outcomes')
            t = self._timing
            w.ints(t.num_requests, t.target_tokens, t.context_tokens, t.emitted_tokens, t.catch_up_tokens,
                   len(t.round_widths)).array(t.round_widths).floats([t.draft_s, t.verify_s, t.other_s])
        for s in self._admits:
            w.ints(s.request_id, s.row, len(s.prompt), s.generated[0])
            w.floats([s.sampling.temperature, s.sampling.top_p]).array(s.prompt)
        self.link.traffic.bytes_admit += 4 * sum(6 + len(s.prompt) for s in self._admits)
        self.link.send(w.tensor())
        self._done, self._outcomes, self._admits, self._timing = [], [], [], None
        self.in_flight = [s.request_id for s in seqs]

    def collect(self) -> Speculation:
        r = wire.Reader(self.link.recv())
        lane, n, busy_us, n_rounds = (int(x) for x in r.ints(4))
        widths = r.ints(n_rounds).tolist()
        orders = tuple(r.ints(n).tolist())  # a lookup step's match orders (all -1 otherwise)
        trees = []
        for _ in range(n):
            k = r.int()
            tokens, parents, scores = r.ints(k), r.ints(k), r.floats(k)
            trees.append(Tree(parents.astype(np.int64), tokens.astype(np.int64), scores.astype(np.float64)))
        if lane != self.lane or n != len(self.in_flight) or not r.is_done:
            raise RuntimeError(f"draft rank answered lane {lane} with {n} trees, expected lane {self.lane} "
                               f"with {len(self.in_flight)}")
        t = self.link.traffic
        t.draft_busy_s += busy_us / 1e6
        t.steps += 1
        t.requests += n
        t.nodes += sum(len(tr) for tr in trees)
        self.in_flight = None
        return Speculation(candidates=[], budgets=[len(tr) for tr in trees], trees=trees, round_widths=widths,
                           lookup_orders=orders if any(o >= 0 for o in orders) else ())

    def propose(self, seqs: list[RequestState]) -> Speculation:
        if self.in_flight is None:
            self.launch(seqs)
        return self.collect()


class DraftLane:
    """The draft rank's mirror of one micro-batch: its requests and its LocalDraft."""

    def __init__(self, drafter: LocalDraft) -> None:
        self.drafter = drafter
        self.active: list[RequestState] = []
        self.last: Speculation | None = None

    def apply(self, r: wire.Reader, n_done: int, n_outcomes: int, n_admits: int) -> None:
        done = set(r.ints(n_done).tolist())
        outcomes = []
        for _ in range(n_outcomes):
            n, k = r.int(), r.int()
            outcomes.append((r.ints(k).tolist(), n))
        if outcomes:
            if len(outcomes) != len(self.active):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(self.active)} on the draft rank")
            for s, (tokens, n) in zip(self.active, outcomes):
                s.generated += tokens
                s.target_len += 1 + n
            self.drafter.commit(self.active, self.last, outcomes)
        timing = None
        if outcomes and self.drafter.policy.observes_steps:
            n_req, target_tokens, context_tokens, emitted, catch_up, n_rounds = (int(x) for x in r.ints(6))
            widths = tuple(r.ints(n_rounds).tolist())
            draft_s, verify_s, other_s = (float(x) for x in r.floats(3))
            timing = StepTiming(n_req, target_tokens, context_tokens, widths, draft_s, verify_s, other_s, emitted,
                                catch_up, tuple(tuple(tokens) for tokens, _ in outcomes))
        if done:
            self.drafter.retire(sorted(done))
            keep = [s for s in self.active if s.request_id not in done]
            for row, s in enumerate(keep):
                if s.row != row:
                    self.drafter.move_row(s, row)
                    s.row = row
            self.active = keep
        if timing is not None:  # after the departures, as in one process
            self.drafter.observe_step(timing)
        new = []
        for _ in range(n_admits):
            rid, row, n_prompt, first = (int(x) for x in r.ints(4))
            temperature, top_p = (float(x) for x in r.floats(2))
            seq = RequestState(rid, r.ints(n_prompt).tolist(), 0, SamplingParams(temperature, top_p), row=row)
            seq.generated, seq.target_len, seq.draft_pending = [first], n_prompt, [first]
            if row != len(self.active) + len(new):
                raise RuntimeError(f"request {rid} admitted to row {row}, the draft expected {len(self.active) + len(new)}")
            new.append(seq)
        if new:
            self.drafter.prefill(new)
            self.active += new

    def propose(self) -> tuple[Speculation, float]:
        t0 = time.perf_counter()
        self.last = self.drafter.propose(self.active)
        return self.last, time.perf_counter() - t0


class DraftServer:
    """The draft rank's loop: one message in, the lane's trees out, until told to stop."""

    def __init__(self, ranks, lanes: list[DraftLane]) -> None:
        self.ranks, self.lanes = ranks, lanes

    def run(self) -> None:
        while True:
            r = wire.Reader(wire.recv(0, self.ranks.control, self.ranks.data))
            lane, wants, n_done, n_outcomes, n_admits = (int(x) for x in r.ints(5))
            if lane == wire.STOP:
                return
            mirror = self.lanes[lane]
            t0 = time.perf_counter()
            mirror.apply(r, n_done, n_outcomes, n_admits)
            if not wants:
                continue
            spec, _ = mirror.propose()
            busy_us = int((time.perf_counter() - t0) * 1e6)
            w = wire.Writer().ints(lane, len(spec.trees), busy_us, spec.num_rounds).array(spec.round_widths)
            w.array(spec.lookup_orders or [-1] * len(spec.trees))
            for tree in spec.trees:
                w.ints(len(tree)).array(tree.tokens).array(tree.parents).floats(tree.probs)
            wire.send(w.tensor(), 0, self.ranks.data, self.ranks.data)
