"""``dynamic-cost`` in the engine falls back to plain decoding where the draft cannot pay (a
fake cost curve with a slow draft), and stays lossless either way; the engine feeds its own
step timings to an online cost model."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
from tiny_models import VOCAB, perturbed_copy, tiny

from specgrove.cost import AffineCostModel, OnlineCostModel
from specgrove.executor.engine import EngineConfig, build_engine

SLOW_DRAFT = AffineCostModel(target_base_s=0.001, target_per_token_s=1e-5, draft_base_s=0.05, draft_per_token_s=1e-3)
CHEAP_DRAFT = AffineCostModel(target_base_s=0.01, target_per_token_s=1e-5, draft_base_s=1e-4, draft_per_token_s=0.0)


def _run(cost_model, batch=4):
    target = tiny("llama", seed=3, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    records = []
    engine = build_engine(target, draft, EngineConfig(method="dynamic-cost", budget=8, max_batch=batch),
                          {"cost_model": cost_model}, on_trace=records.append)
    ar = build_engine(target, draft, EngineConfig(method="ar", budget=0, max_batch=batch))
    rng = np.random.default_rng(2)
    prompts = [rng.integers(1, VOCAB, 6).tolist() for _ in range(batch)]
    for e in (engine, ar):
        for p in prompts:
            e.add_request(p, 40)
    got, want = engine.run(), ar.run()
    steps = [r for r in records if type(r).__name__ == "StepRecord"]
    return got, want, steps, engine


def test_a_slow_draft_makes_dynamic_cost_plain_decoding():
    got, want, steps, _ = _run(SLOW_DRAFT)
    assert got == want
    plain = [s for s in steps if s.draft_rounds == 0]
    assert len(plain) / len(steps) > 0.8  # every step but the probes
    assert all(s.tokens_in_forward == s.batch_size for s in plain)  # roots only: no tree


def test_a_cheap_draft_keeps_speculating():
    got, want, steps, _ = _run(CHEAP_DRAFT)
    assert got == want
    plain = [i for i, s in enumerate(steps) if s.draft_rounds == 0]
    assert len(plain) <= len(steps) // 16  # only the explorations of plain decoding


def test_the_engine_refits_an_online_cost_model():
    # A prior far from any real forward of a tiny model (half a second per verify), so the test
    # does not hang on how fast this machine happens to be: the refit must move toward what the
    # engine measured, and by most of the way.
    far_prior = AffineCostModel(target_base_s=0.5, target_per_token_s=1e-3, draft_base_s=0.05, draft_per_token_s=1e-3)
    online = OnlineCostModel(far_prior)
    got, want, steps, _ = _run(online)
    assert got == want
    assert online.num_observed == len(steps)
    measured = np.median([s.verify_ms / 1e3 for s in steps])
    assert measured < 0.1  # a tiny model's verify forward
    before = abs(far_prior.target_forward_s(4, 4, 40) - measured)
    after = abs(online.target_forward_s(4, 4, 40) - measured)
    assert after < 0.5 * before
