"""Batching edge cases of the engine, each against transformers' own greedy decoding: an EOS
inside an accepted path at batch > 1, one-token requests, requests added between steps."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch
from greedy_check import assert_same_greedy
from tiny_models import perturbed_copy, tiny

from specgrove.executor.engine import EngineConfig, build_engine

PROMPTS = [[3, 9, 27, 81], [5, 6], [11, 2, 7], [40, 41, 42, 43, 44]]
LENGTH = 20


@pytest.fixture(scope="module")
def models():
    target = tiny("llama", seed=3, sharpness=8.0)
    target.generation_config.eos_token_id = None
    return target, perturbed_copy(target, noise=0.01)


def greedy_reference(target, prompt, n):
    ids = torch.tensor([prompt])
    out = target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                          min_new_tokens=n, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def up_to_eos(tokens, eos):
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def spy_verdicts(engine):
    """(request id, tokens it had before, verdict tokens) for every verification."""
    log, accept = [], engine.target.accept

    def spy(seqs, trees, logits):
        verdicts = accept(seqs, trees, logits)
        log.extend((s.request_id, len(s.generated), v.tokens) for s, v in zip(seqs, verdicts))
        return verdicts

    engine.target.accept = spy
    return log


def test_eos_inside_an_accepted_path_at_batch_4(models):
    target, draft = models
    refs = [greedy_reference(target, p, LENGTH) for p in PROMPTS]
    # The EOS is request 0's fourth greedy token; the close draft gets it accepted inside a
    # path with tokens after it, which must be dropped. Request 2's greedy output contains
    # the same token later (it stops there too); requests 1 and 3 never meet it.
    eos = refs[0][3]
    assert eos not in refs[0][:3] and eos in refs[2] and eos not in refs[1] + refs[3]
    engine = build_engine(target, draft, EngineConfig(method="dynamic", budget=8, max_batch=4, eos_token_id=eos))
    log = spy_verdicts(engine)
    ids = [engine.add_request(p, LENGTH) for p in PROMPTS]
    late = engine.add_request(PROMPTS[0], LENGTH, ignore_eos=True)  # waits for a free row
    while ids[0] not in engine.finished:
        engine.step()
        assert engine.active or engine.waiting
    # Request 0 is retired at once: its row went back to the pool, and the waiting request
    # takes it in the next step while the others carry on.
    assert [s.request_id for s in engine.active] == [ids[1], ids[2], ids[3]]
    engine.step()
    assert late in [s.request_id for s in engine.active]
    out = engine.run()
    truncated = [t for rid, n, t in log if rid == ids[0] and eos in t[:-1]]
    assert truncated, "the EOS was never inside an accepted path; the test proves less than it says"
    assert out[ids[0]] == refs[0][:4]
    for rid, prompt, ref in zip(ids, PROMPTS, refs):
        assert_same_greedy(target, prompt, out[rid], up_to_eos(ref, eos))
    assert len(out[ids[1]]) == len(out[ids[3]]) == LENGTH
    assert len(out[ids[2]]) == refs[2].index(eos) + 1 < LENGTH
    assert_same_greedy(target, PROMPTS[0], out[late], refs[0])  # ignore_eos: the full length
    assert len(out[late]) == LENGTH


@pytest.mark.parametrize("method", ["chain", "dynamic"])
def test_one_token_requests_share_a_batch(models, method):
    target, draft = models
    lengths = [1, 9, 1, 14]
    engine = build_engine(target, draft, EngineConfig(method=method, budget=6, max_batch=4))
    ids = [engine.add_request(p, n) for p, n in zip(PROMPTS, lengths)]
    first = engine.admit()
    # The one-token requests are done at their prefill, before any verification.
    assert [(rid, len(tokens)) for rid, tokens in first] == [(i, 1) for i in ids]
    assert sorted(engine.finished) == [ids[0], ids[2]]
    assert [s.request_id for s in engine.active] == [ids[1], ids[3]]
    out = engine.run()
    for rid, prompt, n in zip(ids, PROMPTS, lengths):
        assert len(out[rid]) == n
        assert_same_greedy(target, prompt, out[rid], greedy_reference(target, prompt, n))
    assert engine.finished[ids[0]].num_steps == engine.finished[ids[2]].num_steps == 0


def test_requests_added_between_steps(models):
    target, draft = models
    prompts = PROMPTS + [[7, 7, 1], [60, 3, 8, 1, 2, 9], [13]]
    lengths = [18, 11, 25, 6, 15, 9, 12]
    engine = build_engine(target, draft, EngineConfig(method="dynamic", budget=8, max_batch=4))
    ids = [engine.add_request(prompts[i], lengths[i]) for i in (0, 1)]
    engine.step()
    engine.step()
    ids += [engine.add_request(prompts[i], lengths[i]) for i in (2, 3, 4)]
    engine.step()
    # Two of the three joined the two requests already decoding; one waits for a row.
    assert [s.request_id for s in engine.active] == ids[:4] and [s.request_id for s in engine.waiting] == [ids[4]]
    assert all(len(engine.active[i].generated) > 2 for i in (0, 1))
    engine.step()
    ids += [engine.add_request(prompts[i], lengths[i]) for i in (5, 6)]
    out = engine.run()
    for rid, prompt, n in zip(ids, prompts, lengths):
        assert len(out[rid]) == n
        assert_same_greedy(target, prompt, out[rid], greedy_reference(target, prompt, n))
