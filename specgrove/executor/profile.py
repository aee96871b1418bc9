"""Time the lean runtime's target forward for a model *shape* with random weights.

Forward time does not depend on the weights' values, so a real-size shape (``llama-2-7b``)
can be profiled on a GPU without its checkpoint. The grid covers batch, new tokens per request
and cached context; each point is the median of timed repeats after a warm-up. The points are
fitted with the calibration's robust least squares and compared with the simulator's roofline
for the same shape and device preset, point by point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from specgrove.executor.forward_batch import ForwardBatch
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


def time_point(lean, batch: int, tokens: int, context: int, repeats: int) -> float:
    """Median seconds of one forward: ``tokens`` new tokens in each of ``batch`` rows over
    ``context`` cached slots each (the cache content is whatever is there: time is what
    matters)."""
    fb = ForwardBatch([context + tokens] * batch)
    for row in range(batch):
        fb.add(row, context, [1] * tokens, range(context, context + tokens), range(context, context + tokens),
               [range(context, context + j) for j in range(tokens)])
    kwargs = fb.build(lean.device, select=[(r, tokens - 1) for r in range(batch)])
    times = []
    for _ in range(repeats + 2):  # two warm-ups: allocator and kernel selection
        if lean.device.type == "cuda":
            torch.cuda.synchronize(lean.device)
        t0 = time.perf_counter()
        lean.forward(**kwargs)
        if lean.device.type == "cuda":
            torch.cuda.synchronize(lean.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def profile_shape(spec: ModelSpec, device: str, dtype: torch.dtype, batches, tokens, contexts, repeats: int,
                  progress=None) -> list[Point]:
    model = build_random(spec, device, dtype)
    lean = from_hf(model, max(batches), headroom=max(tokens) + 2)
    points = []
    for b in batches:
        for t in tokens:
            for c in contexts:
                points.append(Point(b, t, c, time_point(lean, b, t, c, repeats)))
                if progress:
                    progress(points[-1])
    return points
