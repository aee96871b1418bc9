"""The embedded demo pair: loads offline, decodes losslessly, samples the target's law."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json

import torch
from greedy_check import assert_same_greedy
from sampling_check import exact_second_token, p_value, sample_engine

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import DEMO_DIR, load_pair
from specgrove.executor.methods import METHOD_OPTIONS


@pytest.fixture(scope="module")
def pair():
    return load_pair()


@pytest.fixture(scope="module")
def prompts(pair):
    lines = (DEMO_DIR.parent.parent.parent / "benchmarks" / "prompts" / "code.jsonl").read_text().splitlines()
    return [pair.tokenizer(json.loads(line)["text"])["input_ids"] for line in lines[:6]]


def test_assets_are_small_and_safetensors():
    files = [p for p in DEMO_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth")]
    assert (DEMO_DIR / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize("method,max_batch", [("dynamic", 1), ("dynamic", 4), ("sequoia", 4), ("chain", 1)])
def test_demo_greedy_equals_transformers(pair, prompts, method, max_batch):
    options = dict(METHOD_OPTIONS.get(method, {}))
    if method == "sequoia":
        options["acceptance"] = [0.6, 0.15, 0.05, 0.03]
    engine = build_engine(pair.target, pair.draft, EngineConfig(method=method, budget=16, max_batch=max_batch), options)
    ids = [engine.add_request(p, 24) for p in prompts]
    out = engine.run()
    for rid, p in zip(ids, prompts):
        x = torch.tensor([p])
        ref = pair.target.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=24,
                                   min_new_tokens=24, pad_token_id=pair.tokenizer.eos_token_id)
        assert_same_greedy(pair.target, p, out[rid], ref[0, len(p):].tolist())
    steps = sum(s.num_steps for s in engine.finished.values())
    assert 23 * len(prompts) / steps > 1.5  # the trained draft is accepted


def test_demo_sampling_matches_target(pair, prompts):
    prompt = prompts[0]
    p1, p2 = exact_second_token(pair.target, prompt)
    firsts, seconds, _ = sample_engine(pair.target, pair.draft, prompt, 1500)
    assert p_value(firsts, p1) > 1e-3
    assert p_value(seconds, p2) > 1e-3
