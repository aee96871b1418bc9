"""The KV-cache estimate matches what the lean runtime allocates; a cache that cannot fit is
refused before allocation (issue 12: no runaway runs)."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch
from tiny_models import tiny

from specgrove.executor import memory
from specgrove.executor.engine import EngineConfig, build_engine, cache_headroom
from specgrove.executor.runtime import from_hf


@pytest.mark.parametrize("rows, headroom", [(1, 0), (3, 258)])
def test_estimate_is_what_from_hf_allocates(family, rows, headroom):
    model = tiny(family)
    lean = from_hf(model, rows, headroom)
    assert memory.kv_cache_bytes(model, rows, headroom) == lean.cache.k.nbytes + lean.cache.v.nbytes


def test_estimate_follows_the_dtype_and_a_sliding_window():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                           sliding_window=64)
    model = MistralForCausalLM(config).to(torch.bfloat16)
    lean = from_hf(model, 2, 10)
    assert memory.kv_cache_bytes(model, 2, 10) == lean.cache.k.nbytes + lean.cache.v.nbytes
    assert memory.cache_shape(model).max_positions == 64 and memory.cache_shape(model).dtype_bytes == 2


def test_check_kv_fits_names_both_models(monkeypatch):
    target, draft = tiny("llama"), tiny("gpt2")
    need = memory.kv_cache_bytes(target, 4, 10) + memory.kv_cache_bytes(draft, 4, 10)
    monkeypatch.setattr(memory, "available_bytes", lambda device: need)
    assert memory.check_kv_fits(target, draft, 4, 10) == need
    monkeypatch.setattr(memory, "available_bytes", lambda device: need - 1)
    with pytest.raises(memory.MemoryBudgetError, match=r"batch of 4 need .* \(target .* \+ draft .*, 10 slots of tree headroom per row\) but only .* on cpu"):
        memory.check_kv_fits(target, draft, 4, 10)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: nothing refused
    assert memory.check_kv_fits(target, draft, 10**9, 10) > 10**12


def test_build_engine_refuses_a_batch_that_cannot_fit(monkeypatch):
    target, draft = tiny("llama"), tiny("llama", seed=1)
    config = EngineConfig(method="ar", max_batch=100_000)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 2**30)
    with pytest.raises(memory.MemoryBudgetError):
        build_engine(target, draft, config)
    small = EngineConfig(method="ar", max_batch=2)
    assert memory.kv_cache_bytes(target, 2, cache_headroom(small)) < 2**30
    assert build_engine(target, draft, small).config.max_batch == 2


def test_available_bytes_reads_meminfo_on_linux():
    free = memory.available_bytes("cpu")
    if not __import__("os").path.exists("/proc/meminfo"):
        assert free is None
    else:
        assert free is not None and free > 0
