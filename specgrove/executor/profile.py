"""Time the lean runtime's target forward for a model *shape* with random weights.

Forward time does not depend on the weights' values, so a real-size shape (``llama-2-7b``)
can be profiled on a GPU without its checkpoint. The grid covers batch, new tokens per request
and cached context; each point is the median of timed repeats after a warm-up. The points are
fitted with the calibration's robust least squares and compared with the simulator's roofline
for the same shape and device preset, point by point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specgrove.executor.measure import forward_kwargs, median_forward_s
from specgrove.executor.runtime import from_hf
from specgrove.sim.models import ModelSpec


@dataclass
class Point:
    batch: int
    tokens_per_request: int
    context_per_request: int
    measured_s: float


def build_random(spec: ModelSpec, device: str, dtype: torch.dtype, vocab: int = 32000):
    """A transformers Llama with ``spec``'s shape and random weights (intermediate size as
    Llama's: 8/3 of hidden, rounded up to 256)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    intermediate = int(-(-(8 * spec.hidden_size // 3) // 256) * 256)
    config = LlamaConfig(hidden_size=spec.hidden_size, intermediate_size=intermediate,
                         num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                         num_key_value_heads=spec.num_kv_heads, vocab_size=vocab, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def profile_shape(spec: ModelSpec, device: str, dtype: torch.dtype, batches, tokens, contexts, repeats: int,
                  progress=None) -> list[Point]:
    model = build_random(spec, device, dtype)
    lean = from_hf(model, max(batches), headroom=max(tokens) + 2)
    points = []
    for b in batches:
        for t in tokens:
            for c in contexts:
                kwargs = forward_kwargs(lean, b, t, c)
                points.append(Point(b, t, c, median_forward_s(lean, kwargs, repeats, warmups=2)))
                if progress:
                    progress(points[-1])
    return points
