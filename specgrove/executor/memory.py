"""KV-cache memory: estimate it before allocating, refuse what cannot fit.

The lean runtime allocates one static cache per model (``runtime/kv.py``): K and V, each
``(layers, rows, kv_heads, max_len, head_dim)`` in the model's dtype, with ``rows`` = the
engine's max batch and ``max_len`` = the model's context + the step headroom
(``engine.cache_headroom``). A large ``--batch-sizes`` or ``--max-batch`` would otherwise ask
for hundreds of GB and swap or crash the host; ``check_kv_fits`` turns that into one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class MemoryBudgetError(ValueError):
    """The KV caches would not fit in the memory available; one line with the numbers."""


@dataclass(frozen=True)
class CacheShape:
    """What sizes one model's KV cache, read from its config as its lean family reads it."""

    layers: int
    kv_heads: int
    head_dim: int
    max_positions: int
    dtype_bytes: int

    def bytes(self, rows: int, headroom: int) -> int:
        """K and V for ``rows`` rows of ``max_positions + headroom`` slots."""
        return self.layers * rows * self.kv_heads * (self.max_positions + headroom) * self.head_dim * 2 * self.dtype_bytes


def _dtype_bytes(model) -> int:
    try:
        return next(model.parameters()).element_size()
    except (AttributeError, StopIteration):
        return torch.tensor([], dtype=getattr(model, "dtype", torch.float32)).element_size()


LLAMA_LIKE = ("llama", "qwen2", "mistral")


def cache_shape(model) -> CacheShape | None:
    """The cache shape of a loaded transformers model (mirrors ``runtime.llama`` / ``runtime.gpt2``);
    None for a model type the lean runtime does not run (``from_hf`` says so)."""
    cfg = model.config
    if cfg.model_type not in LLAMA_LIKE + ("gpt2",):
        return None
    if cfg.model_type == "gpt2":
        heads = cfg.n_head
        return CacheShape(cfg.n_layer, heads, cfg.n_embd // heads, cfg.n_positions, _dtype_bytes(model))
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    max_positions = cfg.max_position_embeddings
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", True) and window < max_positions:
        max_positions = window
    return CacheShape(cfg.num_hidden_layers, kv_heads, head_dim, max_positions, _dtype_bytes(model))


def kv_cache_bytes(model, rows: int, headroom: int) -> int:
    shape = cache_shape(model)
    return 0 if shape is None else shape.bytes(rows, headroom)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory on ``device``: CUDA's free bytes, or on CPU Linux's MemAvailable; None when
    unknown (another OS, another device), and then nothing is refused."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type == "cpu":
        return _meminfo_available()
    return None


def gib(n: float) -> str:
    """Bytes for people: GiB, MiB, KiB or B."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size / 4:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_kv_fits(target, draft, rows: int, headroom: int, device: torch.device | str | None = None) -> int:
    """The bytes the target's and draft's caches need for ``rows`` rows; raises
    ``MemoryBudgetError`` when that exceeds the memory available on ``device`` (default:
    the target's)."""
    need_t = kv_cache_bytes(target, rows, headroom)
    need_d = kv_cache_bytes(draft, rows, headroom)
    need = need_t + need_d
    if device is None:
        device = next(target.parameters()).device
    free = available_bytes(device)
    if free is not None and need > free:
        raise MemoryBudgetError(
            f"the KV caches for a batch of {rows} need {gib(need)} (target {gib(need_t)} + draft {gib(need_d)}, "
            f"{headroom} slots of tree headroom per row) but only {gib(free)} is available on "
            f"{torch.device(device)}; lower the batch size or the budget"
        )
    return need
