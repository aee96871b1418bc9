"""Llama, Qwen2 and Mistral: one pre-norm decoder with RMSNorm, rotary positions, grouped KV
heads and a SwiGLU MLP. Qwen2 only adds q/k/v biases, read from the weights when present."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specgrove.executor.runtime.base import LeanModel, UnsupportedModelError


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    scaling = getattr(config, "rope_scaling", None)
    if rope_type != "default" or (scaling and scaling.get("rope_type", "default") != "default"):
        raise UnsupportedModelError(f"rope type {rope_type!r} is not supported by the lean runtime")
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


class LlamaFamily(LeanModel):
    def __init__(self, model) -> None:
        cfg = model.config
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        first = sd["model.embed_tokens.weight"]
        self.dtype, self.device = first.dtype, first.device
        self.num_layers = cfg.num_hidden_layers
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.vocab_size = cfg.vocab_size
        self.max_positions = cfg.max_position_embeddings
        self.eps = cfg.rms_norm_eps
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise UnsupportedModelError(f"activation {cfg.hidden_act!r} is not supported")
        window = getattr(cfg, "sliding_window", None)
        if window and getattr(cfg, "use_sliding_window", True) and window < self.max_positions:
            # Mistral's window never binds below its length; cap the context instead.
            self.max_positions = window
        theta = _rope_theta(cfg)
        inv_freq = 1.0 / theta ** (
            torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=self.device) / self.head_dim
        )
        # One cos/sin table for every position: a step then costs two lookups, not six ops.
        freqs = torch.arange(self.max_positions + 1024, dtype=torch.float32, device=self.device)[:, None] * inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos_table, self.sin_table = emb.cos().to(self.dtype), emb.sin().to(self.dtype)
        self.embed = first
        self.layers = []
        for i in range(self.num_layers):
            p = f"model.layers.{i}."
            qkv = [sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]
            biases = [sd.get(p + f"self_attn.{n}_proj.bias") for n in "qkv"]
            self.layers.append({
                "ln1": sd[p + "input_layernorm.weight"],
                "ln2": sd[p + "post_attention_layernorm.weight"],
                # Fused projections: one matmul instead of three (or two) per layer.
                "qkv": torch.cat(qkv),
                "qkv_bias": torch.cat(biases) if biases[0] is not None else None,
                "o": sd[p + "self_attn.o_proj.weight"],
                "gate_up": torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]]),
                "down": sd[p + "mlp.down_proj.weight"],
            })
        self.norm = sd["model.norm.weight"]
        self.lm_head = sd.get("lm_head.weight", first)

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)  # one fused op
        xf = x.float()  # half precision: normalise in float32 as transformers does
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos_table[positions][:, None], self.sin_table[positions][:, None]  # (B, 1, T, D)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _layers(self, tokens, positions, slots, mask, num_keys, first_row):
        B, T = tokens.shape
        x = F.embedding(tokens, self.embed)
        cos, sin = self._rotary(positions)
        hq, hk, d = self.num_heads, self.num_kv_heads, self.head_dim
        for i, w in enumerate(self.layers):
            h = self._rms(x, w["ln1"])
            qkv = self.linear(h, w["qkv"], w["qkv_bias"]).view(B, T, hq + 2 * hk, d).transpose(1, 2)
            # q and k rotate together: one rotation's ops per layer instead of two.
            qk = self._rotate(qkv[:, : hq + hk], cos, sin)
            q, k, v = qk[:, :hq], qk[:, hq:], qkv[:, hq + hk:]
            x = x + self.reduce(self.linear(self.attend(i, q, k, v, slots, mask, num_keys, first_row), w["o"]))
            gate, up = self.linear(self._rms(x, w["ln2"]), w["gate_up"]).chunk(2, dim=-1)
            x = x + self.reduce(self.linear(F.silu(gate) * up, w["down"]))
        return x

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self._rms(hidden, self.norm), self.lm_head)
