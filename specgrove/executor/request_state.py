"""Per-request decoding state in the executor, and the invariants the workers keep.

* target cache (row ``row``) holds every token but the last: ``prompt + generated[:-1]``;
  ``generated[-1]`` is the *root* of the next tree, verified together with it.
* draft cache holds the first ``draft_len`` tokens; ``draft_pending`` are the rest (it always
  ends with the root). Accepted nodes the draft never expanded have no draft KV, so they wait
  in ``draft_pending`` and are fed at the start of the next draft round.

Times are ``time.perf_counter()`` seconds: when the request arrived, was admitted (prefilled),
got its first token and finished; a server reports them to its clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from specgrove.executor.sampling import SamplingParams
from specgrove.types import Request


@dataclass
class RequestState:
    request_id: int
    prompt: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    generator: torch.Generator | None = None
    deadline_s: float | None = None  # absolute, for deadline-aware schedulers
    ignore_eos: bool = False  # generate max_new_tokens even past EOS (load tests)
    row: int = -1
    generated: list[int] = field(default_factory=list)
    target_len: int = 0
    draft_len: int = 0
    draft_pending: list[int] = field(default_factory=list)
    is_finished: bool = False
    is_cancelled: bool = False
    num_steps: int = 0  # verification steps this request took part in
    arrival_s: float = 0.0
    admitted_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None

    @property
    def root(self) -> int:
        return self.generated[-1]

    @property
    def context_len(self) -> int:
        return len(self.prompt) + len(self.generated)

    @property
    def remaining(self) -> int:
        return self.max_new_tokens - len(self.generated)

    def snapshot(self) -> Request:
        """What a scheduler policy sees (the simulator hands it the same type)."""
        return Request(self.request_id, len(self.prompt), self.max_new_tokens, self.arrival_s,
                       deadline_s=self.deadline_s, num_generated=len(self.generated))
