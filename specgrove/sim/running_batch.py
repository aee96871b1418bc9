"""A replica's running batch as columns of numpy arrays, so a step is a handful of array
operations rather than a Python loop over requests (what makes an hour of a 16-GPU cluster
cheap). Columns hold only what changes or is read every step; per-request statistics are
folded into the ``RequestRecord`` (``records``) when a request leaves the batch."""

from __future__ import annotations

import numpy as np

COLUMNS = (
    "rid",  # request id
    "left",  # output tokens still to generate
    "ctx",  # tokens in the KV cache
    "prompt",  # prompt tokens (ctx - prompt: its own output already cached)
    "prefill",  # tokens to prefill in the next step (0: decoding)
    "dom",  # acceptance domain index
    "reserved",  # KV tokens reserved at admission (no-preemption schedulers)
    "start_step",  # the replica's step count when this request started decoding
    "start_left",  # ``left`` when it started decoding
)


class RunningBatch:
    def __init__(self) -> None:
        for name in COLUMNS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        self.num_prefill = 0  # rows with prefill > 0, kept as an int to skip masks when 0
        self._ctx_total: int | None = None

    def __len__(self) -> int:
        return len(self.rid)

    def append(self, rows: list[dict]) -> None:
        for name in COLUMNS:
            setattr(self, name, np.concatenate([getattr(self, name), np.array([r.get(name, 0) for r in rows], dtype=np.int64)]))
        self.num_prefill += sum(1 for r in rows if r.get("prefill", 0) > 0)
        self._ctx_total = None

    def keep(self, mask: np.ndarray) -> None:
        for name in COLUMNS:
            setattr(self, name, getattr(self, name)[mask])
        self.num_prefill = int(np.count_nonzero(self.prefill)) if self.num_prefill else 0
        self._ctx_total = None

    def ctx_total(self) -> int:
        """Cached tokens over the batch: summed once, then kept up to date by ``grow``."""
        if self._ctx_total is None:
            self._ctx_total = int(self.ctx.sum())
        return self._ctx_total

    def grow(self, emitted: np.ndarray, num_emitted: int) -> None:
        """Everyone decoded: each request's cache grows by what it emitted."""
        self.ctx += emitted
        self.left -= emitted
        if self._ctx_total is not None:
            self._ctx_total += num_emitted

    def finish_prefill(self, new: np.ndarray, emitted: np.ndarray, step: int) -> None:
        """Mixed step: prefills become cached context; decoders grow as in ``grow``."""
        self.ctx = np.where(new, self.prefill, self.ctx + emitted)
        self.left -= emitted
        self.start_step = np.where(new, step, self.start_step)
        self.start_left = np.where(new, self.left, self.start_left)
        self.prefill = np.where(new, 0, self.prefill)
        self.num_prefill = 0
        self._ctx_total = None

    def row(self, i: int) -> dict:
        return {name: int(getattr(self, name)[i]) for name in COLUMNS}
