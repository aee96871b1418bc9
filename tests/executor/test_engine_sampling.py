"""Sampling at temperature 1: the engine's emitted tokens follow the target's distribution.

The first token comes from the prefill; the second is the first one produced by tree
verification, so its law (marginalised over the first) is the real test. A broken residual
(no renormalisation after rejection) must fail the same check.
"""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
from sampling_check import exact_second_token, p_value, sample_engine
from tiny_models import perturbed_copy, tiny

from specgrove.executor import verify

PROMPT = [4, 8, 15, 16, 23, 42]
NUM = 2500


@pytest.fixture(scope="module")
def pair():
    target = tiny("llama", seed=7, sharpness=6.0)
    return target, perturbed_copy(target, noise=0.03)


def test_second_token_matches_target(pair):
    target, draft = pair
    p1, p2 = exact_second_token(target, PROMPT)
    firsts, seconds, engine = sample_engine(target, draft, PROMPT, NUM)
    assert p_value(firsts, p1) > 1e-3
    assert p_value(seconds, p2) > 1e-3
    # Speculation really happened: some trees had accepted nodes.
    assert any(len(s.generated) == 3 for s in engine.finished.values())


def test_same_seed_same_samples(pair):
    target, draft = pair
    a = sample_engine(target, draft, PROMPT, 40, seed=5)[1]
    b = sample_engine(target, draft, PROMPT, 40, seed=5)[1]
    c = sample_engine(target, draft, PROMPT, 40, seed=6)[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_broken_residual_is_caught(pair, monkeypatch):
    target, draft = pair
    monkeypatch.setattr(verify, "_residual", lambda p, q: p)
    _, p2 = exact_second_token(target, PROMPT)
    _, seconds, _ = sample_engine(target, draft, PROMPT, NUM)
    assert p_value(seconds, p2) < 1e-6
