"""The default cost model: a roofline per forward, plus overhead and communication.

For a forward of model M over t new tokens of b requests with c cached tokens in all, on a
tensor-parallel group of n GPUs::

    flops = 2 P t + 4 L d t (c / b)            # weights, then attention over each request's cache
    bytes = P w + (c + t) kv                    # read weights once, read the cache, write new KV
    time  = overhead + max(flops / (n F mfu), bytes / (n B mbu)) + 2 L allreduce(t d 2, n)

(P params, L layers, d hidden, w bytes per param, kv KV bytes per token, F peak FLOP/s, B
memory bandwidth). Two all-reduces per layer (after attention and after the MLP) is the
Megatron tensor-parallel pattern. A separate draft also pays ``transfer_s`` per step to
ship tree tokens and probabilities one way and the accepted tokens back.

It implements ``specgrove.cost.CostModel``, so a model calibrated on the executor can
replace it without the simulator or any policy noticing.
"""

from __future__ import annotations

from dataclasses import dataclass

from specgrove.sim.hardware import Gpu, Link, allreduce_s
from specgrove.sim.models import ModelSpec

ACTIVATION_BYTES = 2  # bf16 hidden states on the all-reduce wire
TRANSFER_BYTES_PER_NODE = 8  # int32 token id + fp32 probability


@dataclass(frozen=True)
class RooflineCostModel:
    gpu: Gpu
    target: ModelSpec
    draft: ModelSpec
    tp: int = 1
    draft_tp: int = 1
    tp_link: Link | None = None
    draft_link: Link | None = None  # None: the draft shares the target's GPUs
    mfu: float = 0.6
    mbu: float = 0.8

    def __post_init__(self) -> None:
        # The simulator asks for thousands of forward times per simulated second: fold the
        # constants of the formula once. Row: (s per token, s per token*ctx/b, s per cached
        # token) for compute, then memory (fixed part, per token), then all-reduce per token.
        object.__setattr__(self, "_coef", {"target": self._fold(self.target, self.tp), "draft": self._fold(self.draft, self.draft_tp)})

    def _fold(self, model: ModelSpec, n: int) -> tuple[float, ...]:
        flops_rate = n * self.gpu.peak_flops * self.mfu
        byte_rate = n * self.gpu.mem_bandwidth * self.mbu
        comm_fixed = comm_per_token = 0.0
        if n > 1 and self.tp_link is not None:
            # allreduce_s is affine in the message size, so two points give it exactly.
            zero = allreduce_s(0.0, n, self.tp_link)
            per_byte = allreduce_s(1.0, n, self.tp_link) - zero
            comm_fixed = 2 * model.num_layers * zero
            comm_per_token = 2 * model.num_layers * per_byte * model.hidden_size * ACTIVATION_BYTES
        return (
            2.0 * model.num_params / flops_rate,
            4.0 * model.num_layers * model.hidden_size / flops_rate,
            model.weight_bytes / byte_rate,
            model.kv_bytes_per_token / byte_rate,
            comm_fixed,
            comm_per_token,
        )

    def _forward_s(self, which: str, b: int, t: int, c: int) -> float:
        if t <= 0:
            return 0.0
        per_token, per_attn, weights, per_kv, comm_fixed, comm_per_token = self._coef[which]
        compute = per_token * t + (per_attn * t * c / b if b else 0.0)
        memory = weights + per_kv * (c + t)
        return self.gpu.forward_overhead_s + (compute if compute > memory else memory) + comm_fixed + comm_per_token * t

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self._forward_s("target", num_requests, num_tokens, num_context_tokens)

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self._forward_s("draft", num_requests, num_tokens, num_context_tokens)

    def step_overhead_s(self, num_requests: int) -> float:
        """The roofline's host cost lives in the GPU preset's per-forward overhead."""
        return 0.0

    def target_comm_s(self, num_tokens: int) -> float:
        """The all-reduce share of a target forward: what the TP link is busy for."""
        _, _, _, _, comm_fixed, comm_per_token = self._coef["target"]
        return comm_fixed + comm_per_token * num_tokens if num_tokens > 0 else 0.0

    def prefill_s(self, num_requests: int, num_tokens: int) -> tuple[float, float]:
        """A prefill is a forward over the prompt tokens with nothing cached."""
        return self.target_forward_s(num_requests, num_tokens, 0), self.draft_step_s(num_requests, num_tokens, 0)

    def admit_s(self, num_requests: int) -> tuple[float, float]:
        """Like every host cost of the roofline, in the GPU preset's per-forward overhead."""
        return 0.0, 0.0

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        """Separate-draft traffic of one step: candidates out, accepted tokens back."""
        if self.draft_link is None:
            return 0.0
        out = self.draft_link.transfer_s(num_tree_nodes * TRANSFER_BYTES_PER_NODE)
        back = self.draft_link.transfer_s(num_accepted * 4)
        return out + back
