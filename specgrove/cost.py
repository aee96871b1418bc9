"""The cost-model interface: how long a target forward and a draft step take.

Policies that trade tree size against step time (``dynamic-cost``, speculation-aware routing)
ask a ``CostModel``. The executor supplies one fitted to times it measured on the running
device; the simulator supplies a roofline or a model calibrated on executor traces. Both only
need these two methods, so policies stay ignorant of where the numbers came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class CostModel(Protocol):
    def target_forward_s(
        self, num_requests: int, num_tokens: int, num_context_tokens: int
    ) -> float:
        """Seconds for one target forward over ``num_tokens`` new tokens (roots and tree
        nodes of ``num_requests`` requests) attending to ``num_context_tokens`` cached ones."""
        ...

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        """Seconds for one draft forward (one tree depth) over ``num_tokens`` new tokens."""
        ...


@dataclass(frozen=True)
class AffineCostModel:
    """time = base + per_token * tokens + per_context_token * cached tokens, for each model.

    The simplest model that captures what matters on small batches: a fixed launch/overhead
    cost per forward plus a slope once the forward is wide enough to be compute bound.
    """

    target_base_s: float
    target_per_token_s: float
    draft_base_s: float
    draft_per_token_s: float
    target_per_context_token_s: float = 0.0
    draft_per_context_token_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.target_base_s
            + self.target_per_token_s * num_tokens
            + self.target_per_context_token_s * num_context_tokens
        )

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.draft_base_s
            + self.draft_per_token_s * num_tokens
            + self.draft_per_context_token_s * num_context_tokens
        )
