"""Tiny random-init models of each supported family (no downloads, seconds to build)."""

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 97


def tiny(family: str, seed: int = 0, layers: int = 2, hidden: int = 32, sharpness: float = 1.0):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=256)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif family == "mistral":
        model = MistralForCausalLM(MistralConfig(**common, sliding_window=None))
    elif family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=hidden, n_layer=layers, n_head=4,
                                           n_positions=256, bos_token_id=0, eos_token_id=0))
    else:
        raise ValueError(family)
    # Random init leaves some weights at exactly zero/one; perturb so every path matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        # Random models have nearly flat logits; sharpening them keeps greedy decisions far
        # from float near-ties, like a trained model's mostly are.
        final_norm = model.transformer.ln_f if family == "gpt2" else model.model.norm
        final_norm.weight.mul_(sharpness)
    return model.eval()


def perturbed_copy(model, noise: float, seed: int = 1):
    """A draft that mostly agrees with the target: its weights plus a little noise."""
    import copy

    torch.manual_seed(seed)
    draft = copy.deepcopy(model)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p) * noise)
    return draft.eval()
