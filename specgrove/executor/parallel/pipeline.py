"""Two micro-batches in ping-pong, so a separate draft works while the target verifies.

Each micro-batch (a *lane*) is a ``SpecEngine`` with its own cache rows and a ``RemoteDraft``;
the lanes share one request queue, the scheduler policy, the request and step numbering, and
one FIFO wire to the draft rank. ``decode`` asks the draft for every idle lane's trees, then
verifies the lane whose trees were asked for first:

    draft rank:  grow A | grow B | grow A | grow B ...
    rank 0:              verify A | verify B | verify A ...

so the draft grows one lane's trees while the target verifies the other's. Each lane's
requests go through exactly the steps a single engine would run them through, so greedy
output is unchanged and each request's sampling generator draws the same numbers.
"""

from __future__ import annotations

import time
from collections import deque

from specgrove import registry
from specgrove.executor.engine import EngineConfig, SpecEngine, cancel_waiting
from specgrove.executor.request_state import RequestState
from specgrove.trace import Labels


class PipelinedEngine:
    def __init__(self, lanes: list[SpecEngine], config: EngineConfig) -> None:
        self.lanes, self.config = lanes, config
        self.scheduler = registry.create("scheduler", config.scheduler)
        self.waiting: list[RequestState] = []
        self.finished: dict[int, RequestState] = {}
        labels = Labels(config.method, config.max_batch)
        for lane in lanes:
            lane.finished = self.finished  # one view of who is done, for the server
            lane.labels = labels
        self.max_positions = lanes[0].max_positions
        self._in_flight: deque[SpecEngine] = deque()  # lanes whose trees were asked for, oldest first

    # ---- requests, as SpecEngine offers them ---------------------------------------------------
    def add_request(self, *args, **kwargs) -> int:
        seq = self.lanes[0].new_request(*args, **kwargs)  # ids are shared by the lanes
        self.waiting.append(seq)
        return seq.request_id

    def graph_stats(self) -> dict | None:
        """None: micro-batched lanes run across processes, where CUDA graphs are not captured."""
        return None

    def cancel(self, request_id: int) -> bool:
        if cancel_waiting(self.waiting, self.finished, request_id):
            return True
        return any(lane.cancel(request_id) for lane in self.lanes)

    @property
    def active(self) -> list[RequestState]:
        return [s for lane in self.lanes for s in lane.active]

    @property
    def has_work(self) -> bool:
        return bool(self.waiting) or any(lane.has_work for lane in self.lanes)

    # ---- steps -------------------------------------------------------------------------------
    def admit(self) -> list[tuple[int, list[int]]]:
        """Admit waiting requests, in the scheduler's order, into lanes with no trees in
        flight (their batch may change); each goes to the emptiest such lane."""
        free = [lane for lane in self.lanes if lane not in self._in_flight]
        if self.waiting and free:
            order = self.scheduler.order([s.snapshot() for s in self.waiting], time.perf_counter())
            taken = set()
            for i in order:
                open_lanes = [l for l in free if len(l.active) + len(l.waiting) < l.config.max_batch]
                if not open_lanes:
                    break
                lane = min(open_lanes, key=lambda l: len(l.active) + len(l.waiting))
                lane.waiting.append(self.waiting[i])
                taken.add(i)
            self.waiting = [s for i, s in enumerate(self.waiting) if i not in taken]
        out = []
        for lane in free:
            out += lane.admit()
        return out

    def decode(self) -> list[tuple[int, list[int]]]:
        """Ask for every idle lane's trees, then verify the lane that has waited longest."""
        for lane in self.lanes:
            if lane.active and lane not in self._in_flight:
                lane.drafter.launch(lane.active)
                self._in_flight.append(lane)
        if not self._in_flight:
            return []
        return self._in_flight.popleft().decode()

    def step(self) -> list[tuple[int, list[int]]]:
        return self.admit() + self.decode()

    def run(self) -> dict[int, list[int]]:
        while self.has_work:
            self.step()
        return {rid: s.generated for rid, s in sorted(self.finished.items())}
