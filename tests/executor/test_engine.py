"""Greedy losslessness of every method at batch sizes 1, 4 and 16, with continuous batching
(requests of different lengths join and leave between steps)."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from greedy_check import assert_same_greedy
from tiny_models import VOCAB, perturbed_copy, tiny

from specgrove.cost import AffineCostModel
from specgrove.executor.engine import EngineConfig, build_engine

METHODS = ["ar", "chain", "static", "sequoia", "dynamic", "dynamic-cost", "lookup", "dynamic-lookup"]
OPTIONS = {
    "dynamic-cost": {"cost_model": AffineCostModel(5e-3, 1e-5, 2e-4, 0.0)},  # speculation pays
    "sequoia": {"acceptance": [0.7, 0.15, 0.05], "max_depth": 5},
}


@pytest.fixture(scope="module")
def setup():
    target = tiny("llama", seed=3, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, VOCAB, int(rng.integers(3, 20))).tolist() for _ in range(16)]
    lengths = [int(rng.integers(5, 30)) for _ in prompts]
    reference = []
    target.generation_config.eos_token_id = None
    target.generation_config.pad_token_id = 0
    for p, n in zip(prompts, lengths):
        ids = torch.tensor([p])
        out = target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=n, min_new_tokens=n)
        reference.append(out[0, len(p):].tolist())
    return target, draft, prompts, lengths, reference


def run(target, draft, method, prompts, lengths, max_batch, batch_budget="uniform", budget=8):
    config = EngineConfig(method=method, budget=budget, batch_budget=batch_budget, max_batch=max_batch)
    engine = build_engine(target, draft, config, OPTIONS.get(method))
    ids = [engine.add_request(p, n) for p, n in zip(prompts, lengths)]
    out = engine.run()
    return [out[i] for i in ids], engine


@pytest.mark.parametrize("max_batch", [1, 4, 16])
@pytest.mark.parametrize("method", METHODS)
def test_greedy_equals_target_greedy(setup, method, max_batch):
    target, draft, prompts, lengths, reference = setup
    outs, engine = run(target, draft, method, prompts, lengths, max_batch)
    for p, got, want in zip(prompts, outs, reference):
        assert_same_greedy(target, p, got, want)
    if method != "ar":
        # The close draft must actually be accepted, or this test would prove little.
        steps = sum(s.num_steps for s in engine.finished.values())
        assert sum(lengths) / steps > 1.5


def test_plain_decoding_leaves_the_draft_alone(setup, monkeypatch):
    """``ar`` (and any method with no budget) never asks the draft anything, so the draft
    prefills no prompt and keeps no tokens to catch up on, as the simulator charges it."""
    from specgrove.executor.draft_worker import DraftWorker
    from specgrove.trace import Trace

    target, draft, prompts, lengths, reference = setup
    calls = []
    monkeypatch.setattr(DraftWorker, "prefill", lambda self, seqs: calls.append(len(seqs)))
    for method, budget in (("ar", 8), ("dynamic", 0)):
        trace = Trace()
        config = EngineConfig(method=method, budget=budget, max_batch=4)
        engine = build_engine(target, draft, config, OPTIONS.get(method), on_trace=trace.add)
        ids = [engine.add_request(p, n) for p, n in zip(prompts[:4], lengths[:4])]
        out = engine.run()
        assert [out[i] for i in ids] == reference[:4]
        assert not calls, method
        # Traced as no draft work, so that calibration fits no draft forward to it.
        assert trace.prefills and all(p.draft_ms == 0.0 for p in trace.prefills), method
        # Nothing cached, and no tokens piling up to feed it (only the first, set at admission).
        assert all(len(s.draft_pending) <= 1 and s.draft_len == 0 for s in engine.finished.values()), method
    run(target, draft, "chain", prompts[:4], lengths[:4], 4)
    assert calls  # the check can fail: a drafting method does prefill


def test_a_request_keeps_the_arrival_it_was_given(setup):
    """A server stamps a request when it comes in, not when the engine, busy with a step,
    takes it in: the engine keeps that stamp, so queueing and TTFT count the wait."""
    from specgrove.trace import Trace

    target, draft, prompts, lengths, reference = setup
    trace = Trace()
    engine = build_engine(target, draft, EngineConfig(method="chain", max_batch=2), on_trace=trace.add)
    import time

    received = time.perf_counter() - 0.5
    engine.add_request(prompts[0], 4, arrival_s=received)
    engine.add_request(prompts[1], 4)
    engine.run()
    first, second = sorted(trace.requests, key=lambda r: r.request_id)
    assert first.arrival_s == received and first.admitted_s - first.arrival_s >= 0.5
    assert second.arrival_s > received + 0.4 and second.admitted_s - second.arrival_s < 0.5


def test_greedy_global_is_lossless_too(setup):
    target, draft, prompts, lengths, reference = setup
    outs, _ = run(target, draft, "dynamic", prompts, lengths, 16, batch_budget="greedy-global")
    for p, got, want in zip(prompts, outs, reference):
        assert_same_greedy(target, p, got, want)


def test_unrelated_draft_is_still_lossless(setup):
    target, _, prompts, lengths, reference = setup
    stranger = tiny("llama", seed=99, layers=1, hidden=16, sharpness=4.0)
    outs, _ = run(target, stranger, "dynamic", prompts[:6], lengths[:6], 4)
    for p, got, want in zip(prompts, outs, reference):
        assert_same_greedy(target, p, got, want)


FAMILY_PROMPTS = [[3, 9, 27, 81 % VOCAB], [5, 6], [11, 2, 7, 30, 1], [40], [8, 8, 2]]
FAMILY_LENGTHS = [12, 20, 7, 16, 1]  # fixed by the requests, never read off the output


@pytest.fixture(scope="module", params=["qwen2", "mistral", "gpt2"])
def family_setup(request):
    target = tiny(request.param, seed=5, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    target.generation_config.eos_token_id = None
    reference = []
    for p, n in zip(FAMILY_PROMPTS, FAMILY_LENGTHS):
        ids = torch.tensor([p])
        out = target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                              min_new_tokens=n, pad_token_id=0)
        reference.append(out[0, len(p):].tolist())
    return target, draft, reference


@pytest.mark.parametrize("method", ["chain", "static", "sequoia", "dynamic"])
def test_other_families(family_setup, method):
    """Qwen2, Mistral and GPT-2 through several methods at batch 4 (five requests, so one
    joins when another leaves), each request exactly as long as it asked."""
    target, draft, reference = family_setup
    outs, engine = run(target, draft, method, FAMILY_PROMPTS, FAMILY_LENGTHS, 4)
    for p, n, got, want in zip(FAMILY_PROMPTS, FAMILY_LENGTHS, outs, reference):
        assert len(got) == n
        assert_same_greedy(target, p, got, want)
    steps = sum(s.num_steps for s in engine.finished.values())
    assert sum(FAMILY_LENGTHS) / steps > 1.5  # the close draft is accepted


@pytest.mark.parametrize("method", ["chain", "dynamic"])
def test_draft_answers_match_a_fresh_forward(setup, method, monkeypatch):
    """The draft's cached K/V (prefill, pending tokens, tree slots, compaction, row moves)
    must give the same top-k as transformers on the full path; a stale cache would only lower
    acceptance, which greedy equality alone cannot detect."""
    from specgrove.executor import draft_worker
    from specgrove.tree import path_to

    target, draft, prompts, lengths, _ = setup
    original = draft_worker.DraftWorker.round
    checked = []

    def spy(self, every, ids, expansions):
        answers = original(self, every, ids, expansions)
        for st, exp, ans in zip([every[i] for i in ids], expansions, answers):
            for j, v in enumerate(exp.nodes.tolist()):
                path = [] if v < 0 else exp.tokens[path_to(exp.parents, v)].tolist()
                with torch.no_grad():
                    logits = draft(torch.tensor([st.seq.prompt + st.seq.generated + path])).logits[0, -1]
                got = int(ans.tokens[j, 0])
                gap = float(logits.max() - logits[got])
                assert gap < 1e-4, f"draft answer {got} is {gap:.3g} below the true top-1"
                checked.append(gap)
        return answers

    monkeypatch.setattr(draft_worker.DraftWorker, "round", spy)
    run(target, draft, method, prompts[:6], lengths[:6], 4)
    assert len(checked) > 20
