"""What crosses the wire between rank 0 and a separate draft, packed into one int32 tensor.

Per micro-batch step, one message each way (greedy and sampling alike: verification with
top-k trees needs only tokens and parents, never a vocabulary-sized row):

rank 0 -> draft  ``[lane, wants_trees, n_done, n_outcomes, n_admits]``, then
    done:      request ids that left the batch
    outcomes:  per request of the last proposal, in its order, ``[num_accepted, n, tokens...]``
    admits:    per new request ``[id, row, prompt_len, first_token, temperature, top_p, prompt...]``
               (temperature and top_p are float32 bit patterns; the prompt crosses once)
draft -> rank 0  ``[lane, n_requests, busy_us, n_rounds, widths...]``, then per request, in
    the order asked, ``[n, tokens(n), parents(n), scores(n)]`` (scores: float32 bit patterns,
    for the trace): 12 bytes per node and 4 per request.

Messages travel as torch.distributed point-to-point sends: the length (int32) first, then the
payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

STOP = -1  # a lane number that means "shut down"


def f32_bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.int32)


def bits_f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int32).view(np.float32)


class Writer:
    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def ints(self, *values) -> Writer:
        self.parts.append(np.asarray(values, dtype=np.int32).reshape(-1))
        return self

    def array(self, values) -> Writer:
        self.parts.append(np.asarray(values, dtype=np.int32).reshape(-1))
        return self

    def floats(self, values) -> Writer:
        self.parts.append(f32_bits(values).reshape(-1))
        return self

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32))


class Reader:
    def __init__(self, payload: torch.Tensor) -> None:
        self.data, self.at = payload.numpy(), 0

    def ints(self, n: int) -> np.ndarray:
        out = self.data[self.at: self.at + n]
        self.at += n
        return out

    def int(self) -> int:
        return int(self.ints(1)[0])

    def floats(self, n: int) -> np.ndarray:
        return bits_f32(self.ints(n))

    @property
    def is_done(self) -> bool:
        return self.at == len(self.data)


@dataclass
class Traffic:
    """Bytes and messages each way, for the report (``bytes_per_step``)."""

    bytes_out: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    messages_in: int = 0
    bytes_admit: int = 0  # of bytes_out: admissions (prompts cross once, not per step)
    wait_s: float = 0.0  # rank 0 blocked on a reply (draft time not hidden)
    draft_busy_s: float = 0.0  # the draft rank's own time on the replies
    steps: int = 0
    nodes: int = 0
    requests: int = 0
    per_step: list[int] = field(default_factory=list)

    @property
    def step_bytes(self) -> int:
        """Both ways, without the one-off admissions."""
        return self.bytes_out + self.bytes_in - self.bytes_admit

    def as_dict(self) -> dict:
        return {
            "messages": self.messages_out + self.messages_in, "steps": self.steps,
            "nodes": self.nodes, "request_steps": self.requests,
            "bytes_out": self.bytes_out, "bytes_in": self.bytes_in, "bytes_admit": self.bytes_admit,
            "step_bytes_per_step": self.step_bytes / max(self.steps, 1),
            "step_bytes_per_node": self.step_bytes / max(self.nodes, 1),
            "step_bytes_per_request_step": self.step_bytes / max(self.requests, 1),
            "draft_busy_s": self.draft_busy_s, "wait_s": self.wait_s,
            "overlap_fraction": max(0.0, 1.0 - self.wait_s / self.draft_busy_s) if self.draft_busy_s else 0.0,
        }


def send(payload: torch.Tensor, dst: int, idle_group, data_group, pending: list | None = None) -> int:
    """Length over ``idle_group`` (the receiver may be idle and waiting long), payload over
    ``data_group``; returns the bytes sent.

    A gloo send completes only once the receiver has posted its receive. With ``pending`` the
    sends are started and their handles (with the tensors they read) appended, for the caller
    to wait on later: rank 0 asks for one micro-batch's trees while the draft rank is still
    busy with the other's, and must go on to receive those."""
    length = torch.tensor([payload.numel()], dtype=torch.int32)
    if pending is None:
        dist.send(length, dst, group=idle_group)
        if payload.numel():
            dist.send(payload, dst, group=data_group)
    else:
        pending.append((dist.isend(length, dst, group=idle_group), length))
        if payload.numel():
            pending.append((dist.isend(payload, dst, group=data_group), payload))
    return 4 + payload.numel() * 4


def recv(src: int, idle_group, data_group) -> torch.Tensor:
    n = torch.zeros(1, dtype=torch.int32)
    dist.recv(n, src, group=idle_group)
    payload = torch.empty(int(n), dtype=torch.int32)
    if int(n):
        dist.recv(payload, src, group=data_group)
    return payload
