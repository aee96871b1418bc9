"""Tensor parallelism as a transform of a lean model (Megatron's pattern, as gpt-fast applies it).

``shard(model, rank, world, reduce)`` keeps this rank's slice of every layer, in place:

* attention: the q/k/v projection is column-parallel (this rank's heads, and its KV heads:
  the KV cache is then sharded by heads too), the output projection row-parallel;
* MLP: gate/up (or GPT-2's fc) column-parallel, down (or proj) row-parallel;
* embeddings, norms and the output head stay whole on every rank.

A row-parallel projection's outputs are partial sums; the model calls ``reduce`` on them (one
all-reduce after attention, one after the MLP) and the model code knows nothing else of ranks.
A row-parallel bias is kept on rank 0 only, so the all-reduce adds it once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from specgrove.executor.runtime.base import LeanModel, UnsupportedModelError
from specgrove.executor.runtime.gpt2 import GPT2Family
from specgrove.executor.runtime.llama import LlamaFamily


class ShardingError(UnsupportedModelError):
    """The model's heads or MLP do not divide by the tensor-parallel degree."""


def _part(size: int, rank: int, world: int, what: str) -> slice:
    if size % world:
        raise ShardingError(f"{what} ({size}) is not divisible by tp={world}")
    n = size // world
    return slice(rank * n, (rank + 1) * n)


def _rows(w: torch.Tensor, parts: list[tuple[int, int]], rank: int, world: int, what: str) -> torch.Tensor:
    """Concatenate this rank's share of each (offset, size) block of rows of ``w``."""
    pieces = []
    for offset, size in parts:
        s = _part(size, rank, world, what)
        pieces.append(w[offset + s.start: offset + s.stop])
    return torch.cat(pieces).contiguous()


def _cols(w: torch.Tensor, rank: int, world: int, what: str) -> torch.Tensor:
    s = _part(w.shape[1], rank, world, what)
    return w[:, s].contiguous()


def _shard_llama(m: LlamaFamily, rank: int, world: int) -> None:
    hq, hk, d = m.num_heads, m.num_kv_heads, m.head_dim
    _part(hq, rank, world, "attention heads")
    _part(hk, rank, world, "KV heads")
    blocks = [(0, hq * d), (hq * d, hk * d), (hq * d + hk * d, hk * d)]
    for w in m.layers:
        inter = w["down"].shape[1]
        w["qkv"] = _rows(w["qkv"], blocks, rank, world, "attention heads")
        if w["qkv_bias"] is not None:
            w["qkv_bias"] = _rows(w["qkv_bias"], blocks, rank, world, "attention heads")
        w["o"] = _cols(w["o"], rank, world, "attention width")
        w["gate_up"] = _rows(w["gate_up"], [(0, inter), (inter, inter)], rank, world, "MLP width")
        w["down"] = _cols(w["down"], rank, world, "MLP width")
    m.num_heads, m.num_kv_heads = hq // world, hk // world


def _shard_gpt2(m: GPT2Family, rank: int, world: int) -> None:
    n = m.num_heads * m.head_dim
    _part(m.num_heads, rank, world, "attention heads")
    blocks = [(0, n), (n, n), (2 * n, n)]
    for w in m.layers:
        inter = w["mlp.c_fc.weight"].shape[0]
        w["attn.c_attn.weight"] = _rows(w["attn.c_attn.weight"], blocks, rank, world, "attention heads")
        w["attn.c_attn.bias"] = _rows(w["attn.c_attn.bias"], blocks, rank, world, "attention heads")
        w["attn.c_proj.weight"] = _cols(w["attn.c_proj.weight"], rank, world, "attention width")
        w["mlp.c_fc.weight"] = _rows(w["mlp.c_fc.weight"], [(0, inter)], rank, world, "MLP width")
        w["mlp.c_fc.bias"] = _rows(w["mlp.c_fc.bias"], [(0, inter)], rank, world, "MLP width")
        w["mlp.c_proj.weight"] = _cols(w["mlp.c_proj.weight"], rank, world, "MLP width")
        if rank:  # row-parallel biases: added once, by rank 0, before the all-reduce sums
            w["attn.c_proj.bias"] = torch.zeros_like(w["attn.c_proj.bias"])
            w["mlp.c_proj.bias"] = torch.zeros_like(w["mlp.c_proj.bias"])
    m.num_heads = m.num_kv_heads = m.num_heads // world


def check_divisible(hf_config, world: int, role: str) -> None:
    """Refuse, before any rank starts, a model whose heads or MLP do not split ``world`` ways."""
    if world == 1:
        return
    if hf_config.model_type == "gpt2":
        sizes = {"attention heads": hf_config.n_head,
                 "MLP width": hf_config.n_inner or 4 * hf_config.n_embd}
    else:
        heads = hf_config.num_attention_heads
        sizes = {"attention heads": heads, "KV heads": getattr(hf_config, "num_key_value_heads", None) or heads,
                 "MLP width": hf_config.intermediate_size}
    for what, size in sizes.items():
        if size % world:
            raise ShardingError(f"the {role}'s {what} ({size}) is not divisible by tp={world}")


def shard(model: LeanModel, rank: int, world: int, reduce: Callable[[torch.Tensor], torch.Tensor]) -> LeanModel:
    """Keep rank ``rank`` of ``world``'s slice of ``model`` (in place) and reallocate its KV
    cache with this rank's KV heads; ``reduce`` sums a tensor over the ranks in place."""
    if world == 1:
        return model
    if isinstance(model, LlamaFamily):
        _shard_llama(model, rank, world)
    elif isinstance(model, GPT2Family):
        _shard_gpt2(model, rank, world)
    else:
        raise ShardingError(f"{type(model).__name__} has no tensor-parallel layout")
    model.reduce = reduce
    model.lay_out_weights()  # the slices above are row-major again
    cache = model.cache
    model.allocate(cache.max_batch, cache.max_len)
    return model
