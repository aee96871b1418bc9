"""The default cost model: a roofline per forward, plus overhead and communication.

For a forward of model M over t new tokens of b requests with c cached tokens in all, on a
tensor-parallel group of n GPUs::

    flops = 2 P t + 4 L d t (c / b)            # weights, then attention over each request's cache
    bytes = P w + (c + t) kv                    # read weights once, read the cache, write new KV
    time  = overhead + max(flops / (n F mfu), bytes / (n B mbu)) + 2 L allreduce(t d 2, n)

(P params, L layers, d hidden, w bytes per param, kv KV bytes per token, F peak FLOP/s, B
memory bandwidth). Two all-reduces per layer (after attention and after the MLP) is the
Megatron tensor-parallel pattern. A draft that sits apart also pays ``transfer_s`` per step to
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

    def _forward_s(self, model: ModelSpec, n: int, b: int, t: int, c: int) -> float:
        compute, memory, comm = self.forward_parts(model, n, b, t, c)
        return self.gpu.forward_overhead_s + max(compute, memory) + comm

    def forward_parts(self, model: ModelSpec, n: int, b: int, t: int, c: int) -> tuple[float, float, float]:
        """(compute seconds, memory seconds, all-reduce seconds) of one forward."""
        per_request_ctx = c / b if b else 0.0
        flops = 2.0 * model.num_params * t + 4.0 * model.num_layers * model.hidden_size * t * per_request_ctx
        num_bytes = model.weight_bytes + (c + t) * model.kv_bytes_per_token
        compute = flops / (n * self.gpu.peak_flops * self.mfu)
        memory = num_bytes / (n * self.gpu.mem_bandwidth * self.mbu)
        comm = 0.0
        if n > 1 and self.tp_link is not None:
            message = t * model.hidden_size * ACTIVATION_BYTES
            comm = 2 * model.num_layers * allreduce_s(message, n, self.tp_link)
        return compute, memory, comm

    def target_forward_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self._forward_s(self.target, self.tp, num_requests, num_tokens, num_context_tokens)

    def draft_step_s(self, num_requests: int, num_tokens: int, num_context_tokens: int) -> float:
        return self._forward_s(self.draft, self.draft_tp, num_requests, num_tokens, num_context_tokens)

    def target_comm_s(self, num_tokens: int) -> float:
        """The all-reduce share of a target forward: what the TP link is busy for."""
        return self.forward_parts(self.target, self.tp, 1, num_tokens, 0)[2]

    def transfer_s(self, num_tree_nodes: int, num_accepted: int) -> float:
        """Draft-apart traffic of one step: candidates out, accepted tokens back."""
        if self.draft_link is None:
            return 0.0
        out = self.draft_link.transfer_s(num_tree_nodes * TRANSFER_BYTES_PER_NODE)
        back = self.draft_link.transfer_s(num_accepted * 4)
        return out + back
