"""GPT-2: learned absolute positions, LayerNorm, fused QKV (Conv1D weights are (in, out)),
GELU (tanh approximation) MLP, tied output embedding."""

from __future__ import annotations

import torch.nn.functional as F

from specgrove.executor.runtime.base import LeanModel, UnsupportedModelError


class GPT2Family(LeanModel):
    def __init__(self, model) -> None:
        cfg = model.config
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        self.wte, self.wpe = sd["transformer.wte.weight"], sd["transformer.wpe.weight"]
        self.dtype, self.device = self.wte.dtype, self.wte.device
        self.num_layers, self.num_heads = cfg.n_layer, cfg.n_head
        self.num_kv_heads = self.num_heads
        self.head_dim = cfg.n_embd // self.num_heads
        self.vocab_size, self.max_positions = cfg.vocab_size, cfg.n_positions
        self.eps = cfg.layer_norm_epsilon
        if not getattr(cfg, "scale_attn_weights", True) or getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
            raise UnsupportedModelError("GPT-2 attention-scaling variants are not supported")
        if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise UnsupportedModelError(f"activation {cfg.activation_function!r} is not supported")
        # Conv1D stores (in, out); transpose once so every matmul is a plain (out, in) linear.
        self.layers = []
        for i in range(self.num_layers):
            p = f"transformer.h.{i}."
            self.layers.append({name: sd[p + name] for name in (
                "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias",
                "attn.c_attn.bias", "attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.bias")})
            for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                self.layers[-1][name + ".weight"] = sd[p + name + ".weight"].t().contiguous()
        self.ln_f = (sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"])
        self.lm_head = sd.get("lm_head.weight", self.wte)

    def _layers(self, tokens, positions, slots, mask, num_keys, first_row):
        B, T = tokens.shape
        n = self.wte.shape[1]
        # Tree nodes past the context can be drafted but never emitted (the engine admits only
        # prompt + max_new_tokens <= context), so clamping their positions changes no output.
        positions = positions.clamp(max=self.max_positions - 1)
        x = F.embedding(tokens, self.wte) + F.embedding(positions, self.wpe)
        for i, w in enumerate(self.layers):
            h = F.layer_norm(x, (n,), w["ln_1.weight"], w["ln_1.bias"], self.eps)
            width = self.num_heads * self.head_dim  # n, or this rank's heads under tensor parallelism
            q, k, v = self.linear(h, w["attn.c_attn.weight"], w["attn.c_attn.bias"]).split(width, dim=-1)
            q, k, v = (t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
            a = self.attend(i, q, k, v, slots, mask, num_keys, first_row)
            x = x + self.reduce(self.linear(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"]))
            h = F.layer_norm(x, (n,), w["ln_2.weight"], w["ln_2.bias"], self.eps)
            h = F.gelu(self.linear(h, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"]), approximate="tanh")
            x = x + self.reduce(self.linear(h, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"]))
        return x

    def _head(self, hidden):
        return self.linear(F.layer_norm(hidden, (hidden.shape[-1],), *self.ln_f, self.eps), self.lm_head)
