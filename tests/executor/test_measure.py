"""What the executor measures for ``sequoia`` (rank acceptance) and ``dynamic`` /
``dynamic-cost`` (confidence map, step cost model), against independent computations."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from tiny_models import VOCAB, perturbed_copy, tiny

from specgrove.executor import measure
from specgrove.executor.runtime import from_hf


@pytest.fixture(scope="module")
def pair():
    target = tiny("llama", seed=3, sharpness=8.0)
    return target, perturbed_copy(target, noise=0.01)


@pytest.fixture(scope="module")
def text():
    return np.random.default_rng(4).integers(1, VOCAB, 200).tolist()


def brute_force_ranks(target, draft, ids):
    """Per position: the rank of the target's greedy token among the draft's, by full forward."""
    with torch.no_grad():
        want = target(torch.tensor([ids])).logits[0].argmax(-1)
        order = draft(torch.tensor([ids])).logits[0].double().argsort(-1, descending=True)
    return (order == want[:, None]).int().argmax(-1).numpy()


def test_rank_acceptance_counts_the_targets_token_by_draft_rank(pair, text):
    target, draft = pair
    got = measure.measure_rank_acceptance(target, draft, text, num_ranks=4)
    ranks = brute_force_ranks(target, draft, text)
    want = [round(float(np.mean(ranks == r)), 4) for r in range(4)]
    assert got == want
    assert 0.3 < got[0] < 1 and sum(got) <= 1  # the close draft is often, not always, right


def test_a_draft_equal_to_the_target_is_always_right_at_rank_0(pair, text):
    target, _ = pair
    assert measure.measure_rank_acceptance(target, target, text, num_ranks=3) == [1.0, 0.0, 0.0]
    calibration = measure.measure_confidence_map(target, target, text, min_count=5)
    rank0 = calibration["acceptance"][0]
    # Every bin with data measures 1.0, and the map never decreases: from the first bin with
    # data on, it is 1.0.
    first = next(i for i, a in enumerate(rank0) if a == 1.0)
    assert all(a == 1.0 for a in rank0[first:])


def test_cost_model_fit_recovers_an_affine_law(pair, monkeypatch):
    # The timer replaced by exact affine laws: the fit must recover their coefficients, the
    # target's from the target's widths and the draft's from the draft's.
    target, draft = pair
    lean_t, lean_d = from_hf(target, 1, 300), from_hf(draft, 1, 300)
    laws = {id(lean_t): (2e-3, 3e-5, 4e-7), id(lean_d): (5e-4, 6e-6, 7e-8)}
    seen = []

    def fake_time(model, num_tokens, context, repeats):
        base, per_token, per_context = laws[id(model)]
        seen.append((id(model), num_tokens, context))
        return base + per_token * num_tokens + per_context * context

    monkeypatch.setattr(measure, "_time_forward", fake_time)
    cost = measure.measure_cost_model(lean_t, lean_d)
    assert (cost.target_base_s, cost.target_per_token_s, cost.target_per_context_token_s) == pytest.approx(laws[id(lean_t)], rel=1e-9)
    assert (cost.draft_base_s, cost.draft_per_token_s, cost.draft_per_context_token_s) == pytest.approx(laws[id(lean_d)], rel=1e-9)
    assert {t for m, t, _ in seen if m == id(lean_t)} == {1, 8, 32, 64}
    assert {c for _, _, c in seen} == {32, 256}
