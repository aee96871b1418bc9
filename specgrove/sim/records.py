"""What the simulator records per request, and the ledger the replicas report into.

Replicas never touch each other or the cluster: they tell the ``Ledger`` when a request is
admitted, emits, finishes or is rejected, and metrics read the records afterwards.
"""

from __future__ import annotations

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
