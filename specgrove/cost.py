"""The cost-model interface: how long a step's forwards, host work and transfers take.

Policies that trade tree size against step time (``dynamic-cost``, speculation-aware routing)
ask a ``CostModel`` for the two forward times. The executor supplies one fitted to times it
measured on the running device; the simulator a roofline, or a model calibrated on executor
traces (``specgrove.calibration``). The simulator also charges the remaining terms, which
every model states explicitly (zero where it has none), so nothing a fit found is dropped.
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

    def step_overhead_s(self, num_requests: int) -> float:
        """Host seconds per step outside the forwards (acceptance bookkeeping, compaction,
        streaming, scheduling)."""
        ...

    def target_comm_s(self, num_tokens: int) -> float:
        """The tensor-parallel all-reduce share of a target forward (already inside
        ``target_forward_s``; the simulator charges it to the TP link)."""
        ...

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        """Seconds per step to ship candidates to a draft that sits apart and accepted tokens
        back (zero when the draft shares the target's devices)."""
        ...


@dataclass(frozen=True)
class AffineCostModel:
    """time = base + per_request * requests + per_token * tokens + per_context_token * cached
    tokens, for each model; the host overhead and the transfers are affine too.

    The simplest model that captures what matters on small batches: a fixed launch/overhead
    cost per forward plus a slope once the forward is wide enough to be compute bound. It is
    what ``specgrove calibrate`` fits to traces.
    """

    target_base_s: float
    target_per_token_s: float
    draft_base_s: float
    draft_per_token_s: float
    target_per_context_token_s: float = 0.0
    draft_per_context_token_s: float = 0.0
    target_per_request_s: float = 0.0
    draft_per_request_s: float = 0.0
    step_base_s: float = 0.0  # host work per step
    step_per_request_s: float = 0.0
    comm_base_s: float = 0.0  # TP all-reduce share of a target forward
    comm_per_token_s: float = 0.0
    transfer_base_s: float = 0.0  # draft apart: per step, both directions
    transfer_per_node_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.target_base_s
            + self.target_per_request_s * num_requests
            + self.target_per_token_s * num_tokens
            + self.target_per_context_token_s * num_context_tokens
        )

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return (
            self.draft_base_s
            + self.draft_per_request_s * num_requests
            + self.draft_per_token_s * num_tokens
            + self.draft_per_context_token_s * num_context_tokens
        )

    def step_overhead_s(self, num_requests: int) -> float:
        return self.step_base_s + self.step_per_request_s * num_requests

    def target_comm_s(self, num_tokens: int) -> float:
        return self.comm_base_s + self.comm_per_token_s * num_tokens if num_tokens > 0 else 0.0

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        if not (self.transfer_base_s or self.transfer_per_node_s):
            return 0.0
        return self.transfer_base_s + self.transfer_per_node_s * (num_tree_nodes + num_accepted)
