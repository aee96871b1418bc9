"""Sampling through the engine: the emitted tokens follow the target's exact (warped) law.

One mixed run of 2000 requests at batch 16: half sample at temperature 1, half at temperature
0.6 with top-p 0.9, side by side in the same batches. The target is peaked and the draft close
to it, so trees are really accepted (most first verifications accept a node) and accepted
paths are really compacted. Checked against transformers' forward of the target:

* the law of the first token (prefill) and the second (the first verification);
* the joint law of tokens 2 and 3, under each request's own warp;
* every token against its own history's law, and in particular the tokens drawn after an
  accepted path was compacted in a cache row other than row 0 (stale K/V there changes their
  law; the peaked temperature-0.6 half is what makes the change large enough to see);

and two broken residual rules (sample from p after a rejection; subtract q without
renormalising) must fail the same checks.
"""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from law_check import chi_square_p, exact_joint_23, peaked_pair, rank_counts, reference_warp, run_engine, target_laws
from sampling_check import exact_second_token, p_value, sample_engine

from specgrove.executor import draft_worker, verify
from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.sampling import SamplingParams
from specgrove.tree import path_to

PROMPT = [4, 8, 15, 16, 23, 42]
NUM = 2500  # the broken-residual control's sample size (below)
PLAIN = SamplingParams(1.0)
WARPED = SamplingParams(0.6, 0.9)  # temperature != 1 and top-p < 1
MIXED = 2000  # requests in the mixed run, alternating PLAIN and WARPED
NEW = 6  # tokens per request


@pytest.fixture(scope="module")
def pair():
    return peaked_pair()


@pytest.fixture(scope="module")
def mixed(pair):
    target, draft = pair
    return run_engine(target, draft, [PROMPT] * MIXED, [PLAIN, WARPED] * (MIXED // 2), NEW)


def _group(run, params):
    return np.array([o for o, s in zip(run.outputs, run.params) if s == params])


def _joint_23_p(target, outputs, params):
    counts = np.zeros((target.config.vocab_size,) * 2)
    np.add.at(counts, (outputs[:, 1], outputs[:, 2]), 1)
    return chi_square_p(counts, exact_joint_23(target, PROMPT, params))


def _ranks_p(target, run, first_index):
    """Every sampled token from ``first_index[request]`` on, judged against the law of its own
    history (each request under its own sampling parameters)."""
    laws, tokens = [], []
    for params in (PLAIN, WARPED):
        rids = [r for r in first_index if run.params[r] == params]
        if not rids:
            continue
        seqs = [run.prompts[r] + run.outputs[r] for r in rids]
        law = target_laws(target, seqs, params)
        for i, r in enumerate(rids):
            for k in range(first_index[r], len(run.outputs[r])):
                laws.append(law[i, len(run.prompts[r]) - 1 + k])
                tokens.append(run.outputs[r][k])
    observed, expected = rank_counts(np.array(laws), np.array(tokens))
    return chi_square_p(observed, expected), len(tokens)


def test_speculation_is_really_exercised(mixed):
    assert all(len(o) == NEW for o in mixed.outputs)
    for params in (PLAIN, WARPED):
        firsts = [n for r, n in mixed.first_verdicts.items() if mixed.params[r] == params]
        assert len(firsts) == MIXED // 2
        assert np.mean([n > 0 for n in firsts]) >= 0.5, params
    # Most requests had an accepted path compacted in a row > 0 with tokens still to draw.
    assert len(mixed.after_compaction) >= MIXED // 2


def test_first_and_second_token_marginals(pair, mixed):
    target, _ = pair
    p1, p2 = exact_second_token(target, PROMPT)
    plain = _group(mixed, PLAIN)
    assert p_value(plain[:, 0], p1) > 1e-3
    assert p_value(plain[:, 1], p2) > 1e-3


@pytest.mark.parametrize("params", [PLAIN, WARPED], ids=["t1", "t0.6-top0.9"])
def test_joint_law_of_tokens_two_and_three(pair, mixed, params):
    target, _ = pair
    assert _joint_23_p(target, _group(mixed, params), params) > 1e-3


def test_every_token_follows_its_history_law(pair, mixed):
    target, _ = pair
    p, n = _ranks_p(target, mixed, {r: 0 for r in range(MIXED)})
    assert n == MIXED * NEW
    assert p > 1e-3


def test_tokens_after_a_compaction_follow_the_target(pair, mixed):
    target, _ = pair
    p, n = _ranks_p(target, mixed, mixed.after_compaction)
    assert n >= 1000
    assert p > 1e-3


def test_same_seed_same_samples(pair):
    target, draft = pair
    a = sample_engine(target, draft, PROMPT, 40, seed=5)[1]
    b = sample_engine(target, draft, PROMPT, 40, seed=5)[1]
    c = sample_engine(target, draft, PROMPT, 40, seed=6)[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_broken_residual_is_caught(pair, monkeypatch):
    # Negative control 1: after a rejection, sample from p itself.
    target, draft = pair
    monkeypatch.setattr(verify, "_residual", lambda p, q: p)
    _, p2 = exact_second_token(target, PROMPT)
    _, seconds, _ = sample_engine(target, draft, PROMPT, NUM)
    assert p_value(seconds, p2) < 1e-6


def test_unnormalised_residual_is_caught(pair, monkeypatch):
    # Negative control 2: max(p - q, 0) without renormalisation. A later sibling is then
    # accepted with p(x) instead of p(x) / (1 - p(rejected)); the same checks must fail.
    target, draft = pair
    monkeypatch.setattr(verify, "_residual", lambda p, q: torch.clamp(p - q, min=0.0))
    run = run_engine(target, draft, [PROMPT] * 1500, [PLAIN] * 1500, NEW)
    assert _joint_23_p(target, _group(run, PLAIN), PLAIN) < 1e-6
    assert _ranks_p(target, run, {r: 0 for r in range(1500)})[0] < 1e-6


def test_draft_proposes_from_each_requests_warped_law(pair, monkeypatch):
    """Requests with four different settings in one batch: every draft answer is the top-k of
    the draft's own law after the node's full path, warped as that request samples (greedy:
    the plain softmax), computed afresh by transformers."""
    _, draft = pair
    settings = [WARPED, SamplingParams(1.3), SamplingParams(), SamplingParams(1.0, 0.5)]
    original = draft_worker.DraftWorker.round
    checked = []

    def spy(self, every, ids, expansions):
        answers = original(self, every, ids, expansions)
        for st, exp, ans in zip([every[i] for i in ids], expansions, answers):
            s = st.seq.sampling
            for j, v in enumerate(exp.nodes.tolist()):
                path = [] if v < 0 else exp.tokens[path_to(exp.parents, v)].tolist()
                with torch.no_grad():
                    logits = draft(torch.tensor([st.seq.prompt + st.seq.generated + path])).logits[0, -1]
                want = reference_warp(logits, 1.0, 1.0) if s.is_greedy else reference_warp(logits, s.temperature, s.top_p)
                np.testing.assert_allclose(ans.probs[j], want[ans.tokens[j]], atol=1e-4)
                assert want[ans.tokens[j, 0]] == pytest.approx(want.max(), abs=1e-4)
                checked.append(s)
        return answers

    monkeypatch.setattr(draft_worker.DraftWorker, "round", spy)
    engine = build_engine(pair[0], draft, EngineConfig(method="dynamic", budget=8, max_batch=4))
    for i, s in enumerate(settings):
        engine.add_request(PROMPT, 8, s, seed=i)
    engine.run()
    assert set(checked) == set(settings) and len(checked) > 40
