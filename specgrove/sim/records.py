"""What the simulator records per request, and the ledger the replicas report into.

Replicas never touch each other or the cluster: they tell the ``Ledger`` when a request is
admitted, emits, finishes or is rejected, and metrics read the records afterwards.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass


@dataclass
class RequestRecord:
    """Everything metrics need about one request, filled in as it moves through."""

    request_id: int
    replica: int
    domain: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    admitted_s: float = float("nan")
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    decode_steps: int = 0
    decode_tokens: int = 0
    preemptions: int = 0
    rejected: bool = False
    error: str = ""  # why it failed: a real request (``specgrove load``), or why the simulator rejected it
    reject_reason: str = ""  # the simulator's: "context_length" or "kv_capacity"
    # A real request's gaps between consecutive streamed chunks (``specgrove load``: the
    # inter-token latencies); the simulator leaves it empty and reports its ITL from ``Series``.
    chunk_gaps_s: tuple[float, ...] = ()
    # Seconds a client sees on top of the server's times (request in, first and last chunk
    # out): a calibration profile's ``frontend_s``, which the simulated server does not spend.
    frontend_s: float = 0.0

    @property
    def tau(self) -> float:
        return self.decode_tokens / self.decode_steps if self.decode_steps else float("nan")

    def leave_batch(self, row: dict, step: int) -> None:
        """Fold a stint of decoding (until finish or preemption) into the totals."""
        if row["prefill"] == 0:  # it did start decoding
            self.decode_steps += step - row["start_step"]
            self.decode_tokens += row["start_left"] - row["left"]


class Ledger:
    """Every request's record, and the run's running totals."""

    def __init__(self) -> None:
        self.records: dict[int, RequestRecord] = {}
        self.tokens_emitted = 0
        self.num_finished = 0

    def arrive(self, record: RequestRecord) -> None:
        self.records[record.request_id] = record

    def admit(self, request_id: int, now: float) -> None:
        rec = self.records[request_id]
        if rec.admitted_s != rec.admitted_s:  # NaN: the first admission (not a readmission)
            rec.admitted_s = now

    def first_token(self, request_id: int, now: float) -> None:
        rec = self.records[request_id]
        if rec.first_token_s != rec.first_token_s:
            rec.first_token_s = now

    def finish(self, request_id: int, now: float) -> None:
        self.records[request_id].finish_s = now
        self.num_finished += 1

    def reject(self, request_id: int, reason: str = "", detail: str = "") -> None:
        rec = self.records[request_id]
        rec.rejected, rec.reject_reason, rec.error = True, reason, detail


class Series:
    """One replica's state sampled at the end of each of its steps (``Replica._account``):
    the time, the running requests (batch size, every micro-batch's), the KV tokens cached
    over them and that as a fraction of the replica's capacity, and the waiting queue. Also
    the inter-token latencies: each step's gap since its micro-batch's previous step, once
    per request that was decoding in it (weight), which is when its next chunk came out."""

    FIELDS = ("t_s", "batch_size", "kv_tokens", "kv_use", "queue_len")

    def __init__(self, kv_capacity_tokens: int) -> None:
        self.capacity = max(int(kv_capacity_tokens), 1)
        self.t_s, self.kv_use = array("d"), array("d")
        self.batch_size, self.kv_tokens, self.queue_len = array("q"), array("q"), array("q")
        self.gaps_s, self.gap_weights = array("d"), array("q")
        self._last: dict[int, float] = {}

    def sample(self, replica, mb, plan) -> None:
        now = replica.env.now
        kv = sum(m.batch.ctx_total() for m in replica.micro)
        self.t_s.append(now)
        self.batch_size.append(replica.num_running)
        self.kv_tokens.append(kv)
        self.kv_use.append(kv / self.capacity)
        self.queue_len.append(len(replica.waiting))
        last = self._last.get(mb.index)
        if last is not None and plan.num_decoding:
            self.gaps_s.append(now - last)
            self.gap_weights.append(int(plan.num_decoding))
        self._last[mb.index] = now

    def __len__(self) -> int:
        return len(self.t_s)

    def to_dict(self) -> dict:
        return {k: list(getattr(self, k)) for k in self.FIELDS}
