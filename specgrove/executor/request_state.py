"""Per-request decoding state in the executor, and the invariants the workers keep.

* target cache (row ``row``) holds every token but the last: ``prompt + generated[:-1]``;
  ``generated[-1]`` is the *root* of the next tree, verified together with it.
* draft cache holds the first ``draft_len`` tokens; ``draft_pending`` are the rest (it always
  ends with the root). Accepted nodes the draft never expanded have no draft KV, so they wait
  in ``draft_pending`` and are fed at the start of the next draft round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RequestState:
    request_id: int
    prompt: list[int]
    max_new_tokens: int
    row: int = -1
    generated: list[int] = field(default_factory=list)
    target_len: int = 0
    draft_len: int = 0
    draft_pending: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    is_finished: bool = False
    num_steps: int = 0

    @property
    def root(self) -> int:
        return self.generated[-1]

    @property
    def context_len(self) -> int:
        return len(self.prompt) + len(self.generated)

    @property
    def remaining(self) -> int:
        return self.max_new_tokens - len(self.generated)
