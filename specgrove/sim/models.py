"""Model specs and draft/target pair presets.

A spec carries what the roofline needs: parameter count (weight bytes and 2 FLOPs per
parameter per token), layers and hidden size (attention FLOPs and all-reduce message size),
and KV heads (KV-cache bytes per token); and its context length (``max_positions``, the
config's ``max_position_embeddings``): a request whose prompt plus output passes it cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    name: str
    num_params: float
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    bytes_per_param: int = 2  # bf16
    max_positions: int = 4096  # context length: prompt + output tokens


    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def weight_bytes(self) -> float:
        return self.num_params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> int:
        # K and V, every layer, every KV head.
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.bytes_per_param


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("llama-68m", 68e6, 2, 768, 12, 12, max_positions=2048),
        ModelSpec("llama-2-7b", 6.74e9, 32, 4096, 32, 32, max_positions=4096),
        ModelSpec("llama-2-70b", 69.0e9, 80, 8192, 64, 8, max_positions=4096),
        ModelSpec("llama-3.2-1b", 1.24e9, 16, 2048, 32, 8, max_positions=131072),
        ModelSpec("llama-3.1-8b", 8.03e9, 32, 4096, 32, 8, max_positions=131072),
        # The executor's demo pair (specgrove/assets/demo/*/config.json), fp32 on CPU.
        ModelSpec("demo-target", 3_688_704, 4, 256, 4, 4, bytes_per_param=4, max_positions=512),
        ModelSpec("demo-draft", 658_048, 2, 128, 4, 4, bytes_per_param=4, max_positions=512),
    )
}


@dataclass(frozen=True)
class PairPreset:
    """A draft/target pair and its synthetic draft's default behaviour (``acceptance.SyntheticDraft``),
    and its prompt lookup's (``lookup.SyntheticLookup``; empty: that class's defaults)."""

    target: str
    draft: str
    draft_behaviour: dict = field(default_factory=dict)
    lookup_behaviour: dict = field(default_factory=dict)


# Draft confidence means are rough: larger, same-family drafts agree with their target more.
PAIRS: dict[str, PairPreset] = {
    "llama-2-7b/68m": PairPreset("llama-2-7b", "llama-68m", {"confidence_mean": 0.55}),
    "llama-3.1-8b/3.2-1b": PairPreset("llama-3.1-8b", "llama-3.2-1b", {"confidence_mean": 0.7}),
    "llama-2-70b/7b": PairPreset("llama-2-70b", "llama-2-7b", {"confidence_mean": 0.75}),
    # The demo pair's prompt lookup on the held-out code prompts, as ``specgrove calibrate``
    # fits it from a ``bench --methods lookup --batch-sizes 1,4 --trace`` run (session 7).
    "demo": PairPreset("demo-target", "demo-draft", {"confidence_mean": 0.5},
                       {"orders": (0.33, 0.04, 0.21),
                        "accept": ((0.28, 0.69, 0.68, 0.59), (0.58, 0.52, 0.36, 0.5), (0.94, 0.97, 0.89, 0.83))}),
}


def context_tokens(target: ModelSpec, draft: ModelSpec) -> int:
    """The longest request (prompt + output tokens) a pair can serve: the draft reads the same
    context as the target, so the shorter of the two contexts bounds it."""
    return min(target.max_positions, draft.max_positions)
