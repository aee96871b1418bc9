"""Small records shared by the executor and the simulator (numpy-free plain data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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


@dataclass
class StepRecord:
    """One request's share of one decoding step: a line of a step trace (JSON lines).

    The executor writes these; calibration reads them to fit the simulator's cost and
    acceptance models.
    """

    request_id: int
    step: int
    tree_size: int
    depth: int
    accepted_len: int
    draft_ms: float
    verify_ms: float
    batch_size: int
    tokens_in_forward: int
    context_len: int
    extra: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out
