"""The request as schedulers and routers see it, in the executor and the simulator alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Request:
    """One generation request as a scheduler sees it."""

    request_id: int
    prompt_tokens: int
    max_new_tokens: int
    arrival_s: float = 0.0
    domain: str = "default"
    deadline_s: float | None = None
    num_generated: int = 0

    @property
    def remaining_tokens(self) -> int:
        return self.max_new_tokens - self.num_generated

    @property
    def context_len(self) -> int:
        return self.prompt_tokens + self.num_generated
