"""Lean forwards over transformers' weights, with a static KV cache that compacts in place.

``from_hf(model, max_batch, max_len)`` wraps a loaded transformers causal LM: Llama, Qwen2 and
Mistral share ``LlamaFamily``; GPT-2 has ``GPT2Family``. Every family exposes the same
``forward(tokens, positions, slots, mask, num_keys)``, so tree attention, compaction and the
workers above are written once. Tests check each against transformers' own forward.
"""

from specgrove.executor.runtime.base import LeanModel, UnsupportedModelError, from_hf  # noqa: F401
from specgrove.executor.runtime.kv import KVCache  # noqa: F401
