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


def _both(engine, target, draft, batch=4):
    """``batch`` 6-token prompts, 40 new tokens each, through ``engine`` and plain ``ar``."""
    ar = build_engine(target, draft, EngineConfig(method="ar", budget=0, max_batch=batch))
    rng = np.random.default_rng(2)
    prompts = [rng.integers(1, VOCAB, 6).tolist() for _ in range(batch)]
    for e in (engine, ar):
        for p in prompts:
            e.add_request(p, 40)
    return engine.run(), ar.run()


def _same_as_ar(engine, target, draft):
    got, want = _both(engine, target, draft)
    assert got == want


def _run(cost_model, batch=4):
    target = tiny("llama", seed=3, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    records = []
    engine = build_engine(target, draft, EngineConfig(method="dynamic-cost", budget=8, max_batch=batch),
                          {"cost_model": cost_model}, on_trace=records.append)
    got, want = _both(engine, target, draft, batch)
    steps = [r for r in records if type(r).__name__ == "StepRecord"]
    return got, want, steps, engine


def test_where_every_kind_of_speculation_loses_dynamic_cost_decodes_plainly():
    # A slow draft, and verification tokens as dear as a whole forward: neither a draft tree
    # nor a prompt-lookup chain can pay.
    losing = AffineCostModel(target_base_s=0.001, target_per_token_s=0.002, draft_base_s=0.05, draft_per_token_s=1e-3)
    got, want, steps, _ = _run(losing)
    assert got == want
    plain = [s for s in steps if s.draft_rounds == 0]
    assert len(plain) / len(steps) > 0.8  # every step but the probes
    assert all(s.tokens_in_forward == s.batch_size for s in plain)  # roots only: no tree


def test_a_slow_draft_leaves_dynamic_cost_the_free_proposals_of_prompt_lookup():
    # Verification tokens cheap, the draft slow: the requests' own contexts propose (no draft
    # round), the draft only on probes.
    got, want, steps, _ = _run(SLOW_DRAFT)
    assert got == want
    undrafted = [s for s in steps if s.draft_rounds == 0]
    assert len(undrafted) / len(steps) > 0.8
    lookups = [s for s in undrafted if s.tokens_in_forward > s.batch_size]
    assert lookups, "matches in the context are verified"
    accepted = sum(r.accepted_len for s in lookups for r in s.requests)
    assert accepted > 0


def test_a_cheap_draft_keeps_speculating():
    got, want, steps, _ = _run(CHEAP_DRAFT)
    assert got == want
    plain = [i for i, s in enumerate(steps) if s.tokens_in_forward == s.batch_size]  # no tree at all
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


def test_a_probe_drafts_over_its_own_cache_row_and_does_not_teach_the_draft_fit():
    """A probe (one request speculates, the others decode plainly) runs its draft rounds over
    that request's row alone, not padded over the batch; and its rounds, which cost one
    request's, stay out of the online draft fit, which prices a whole batch's rounds."""
    online = OnlineCostModel(CHEAP_DRAFT)  # speculation pays: probes first (unknown shapes), then the batch
    draft_fits = []
    observe = online.draft.observe
    online.draft.observe = lambda x, y: (draft_fits.append(x), observe(x, y))[1]
    target = tiny("llama", seed=3, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    records, widths = [], []
    engine = build_engine(target, draft, EngineConfig(method="dynamic-cost", budget=8, max_batch=4),
                          {"cost_model": online}, on_trace=records.append)
    model, drafter = engine.drafter.model, engine.drafter
    # Shapes first, while the start-up model says they pay: the whole batch then bets on one
    # before the online fit learns that a tiny target's forward costs about the draft's.
    engine.policy.plain_first = 0
    engine.policy.trust_requests = 1  # one probe per shape: the short run reaches whole-batch steps
    forward, propose = model.forward, drafter.propose
    step = [None]  # the decode step whose trees are being proposed (None: a prompt prefill)

    def proposing(seqs):
        step[0] = steps_proposed[0]
        steps_proposed[0] += 1
        try:
            return propose(seqs)
        finally:
            step[0] = None

    steps_proposed = [0]
    drafter.propose = proposing
    probed = []  # per step, whether the policy ran it as a probe
    observe_step = engine.policy.observe_step
    engine.policy.observe_step = lambda timing: (probed.append(engine.policy._probe), observe_step(timing))[1]
    model.forward = lambda **kw: (widths.append((step[0], kw["tokens"].shape[0])), forward(**kw))[1]
    _same_as_ar(engine, target, draft)
    steps = [r for r in records if type(r).__name__ == "StepRecord"]
    probes = [s for s, probing in zip(steps, probed) if probing]
    assert probes, "a shape nothing is known of is first tried on one request"
    # A probe drafts for one request; that request may still keep no node, when the online fit
    # (real timings, so now and then) says none pays for its verification: never more than one.
    assert all(s.draft_rounds and sum(q.tree_size > 0 for q in s.requests) <= 1 for s in probes)
    assert any(sum(q.tree_size > 0 for q in s.requests) == 1 for s in probes)
    assert steps_proposed[0] == len(steps)
    for probe in probes:
        rows = [b for n, b in widths if n == steps.index(probe)]
        assert rows and all(b == 1 for b in rows), rows
    assert any(b == 4 for n, b in widths if n is not None)  # a whole batch's rounds span every row
    assert len(draft_fits) == sum(1 for s in steps if s.draft_rounds) - len(probes)


def test_the_draft_caches_a_prompt_only_when_the_policy_first_speculates_on_it():
    """``dynamic-cost``'s draft is lazy: no draft forward at admission. Where speculation
    loses, the requests never probed cost the draft nothing at all; the first round over a
    request catches up on its prompt and the tokens since, and the step's timing says how many
    (the online draft fit prices them with the round's nodes)."""
    target = tiny("llama", seed=3, sharpness=8.0)
    draft = perturbed_copy(target, noise=0.01)
    online = OnlineCostModel(SLOW_DRAFT)
    fed = []  # (step, tokens) per draft forward; step None: outside any proposal
    timings = []
    engine = build_engine(target, draft, EngineConfig(method="dynamic-cost", budget=8, max_batch=4),
                          {"cost_model": online})
    model, drafter, policy = engine.drafter.model, engine.drafter, engine.policy
    forward, propose, observe_step = model.forward, drafter.propose, policy.observe_step
    where = [None]

    def proposing(seqs):
        where[0] = len(timings)
        try:
            return propose(seqs)
        finally:
            where[0] = None

    drafter.propose = proposing
    policy.observe_step = lambda timing: (timings.append(timing), observe_step(timing))[1]
    model.forward = lambda **kw: (fed.append((where[0], kw["tokens"].shape[-1])), forward(**kw))[1]
    _same_as_ar(engine, target, draft)
    assert fed and all(step is not None for step, _ in fed)  # no prompt prefill in the draft
    drafted = [t for t in timings if t.round_widths]
    assert 0 < len(drafted) < len(timings) // 4  # the probes only: speculation loses here
    first = drafted[0]
    # The first probe (of the batch's second request: probes take the requests in turn, from
    # row 1) feeds its prompt (6 tokens), its first token and every token the steps before
    # emitted for it (plain or lookup steps; the last is its root): all but the root.
    before = timings[:timings.index(first)]
    assert first.catch_up_tokens == 6 + sum(len(t.emitted[1]) for t in before)
    assert all(t.catch_up_tokens == 0 for t in timings if not t.round_widths)
