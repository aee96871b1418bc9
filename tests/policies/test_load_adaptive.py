"""``dynamic-cost`` decides per step whether to speculate at all: on a cost curve where drafting
cannot pay (a fake, slow draft) it decodes plainly, probing speculation now and then; where
drafting is cheap it speculates every step. The online cost model refits from step timings."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specgrove import registry
from specgrove.cost import AffineCostModel, OnlineCostModel, StepTiming
from specgrove.policies import speculate
from specgrove.policies.synthetic import MarkovPair

PAIR = MarkovPair.random(vocab=24, seed=5, agreement=0.9, peak=0.05)
CHEAP_DRAFT = AffineCostModel(target_base_s=0.010, target_per_token_s=0.0001, draft_base_s=0.0005,
                              draft_per_token_s=0.00001)
SLOW_DRAFT = AffineCostModel(target_base_s=0.010, target_per_token_s=0.0001, draft_base_s=0.050,
                             draft_per_token_s=0.001)


def run_steps(cost_model, steps=40, batch=4, shapes=("tree",), options=None):
    policy = registry.create("tree", "dynamic-cost", cost_model=cost_model, topk=3, frontier=3, max_depth=5,
                             shapes=shapes)
    split = registry.get("batch-budget", "uniform")
    sizes, rounds = [], []
    for _ in range(steps):
        spec = speculate(policy, split, 16, 16 * batch, [100] * batch,
                         lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)])
        sizes.append(sum(len(t) for t in spec.trees))
        rounds.append(spec.num_rounds)
        if options is not None:
            options.append(policy._shape or "plain")
    return np.array(sizes), np.array(rounds)


def test_a_draft_that_cannot_pay_falls_back_to_plain_decoding():
    sizes, rounds = run_steps(SLOW_DRAFT)
    plain = sizes == 0
    assert plain.mean() > 0.85  # plain decoding, but for the first step and the probes
    assert (rounds[plain] == 0).all()  # a plain step runs no draft round at all
    probes = np.flatnonzero(~plain)
    assert probes[0] == 0 and len(probes) <= 3  # the first step, then explorations, ever rarer


def test_a_cheap_draft_speculates_every_step_but_the_explorations():
    sizes, rounds = run_steps(CHEAP_DRAFT, steps=60)
    plain = np.flatnonzero(sizes == 0)
    # One plain step after 16 speculative ones, then after 32: each choice is re-tried, with
    # a patience that doubles while the verdict stands.
    assert plain.tolist() == [16, 49]
    assert (rounds[sizes > 0] > 0).all()


# Verification that costs a lot per token: a chain (one node per draft round, few nodes to
# verify) beats a wide tree, which beats plain decoding.
STEEP_VERIFY = AffineCostModel(target_base_s=0.010, target_per_token_s=0.0003, draft_base_s=0.0005,
                               draft_per_token_s=0.00001)


def test_each_shape_is_learnt_first_then_the_best_runs():
    options = []
    run_steps(CHEAP_DRAFT, steps=30, shapes=("tree", "chain"), options=options)
    assert options[:2] == ["tree", "chain"]  # nothing known yet: try each shape once
    assert options.count("plain") == 1  # one exploration of plain decoding in 30 steps
    assert options.count("tree") > 20  # a cheap draft and cheap verification: the wide tree


def test_steep_verification_chooses_the_chain():
    options = []
    sizes, rounds = run_steps(STEEP_VERIFY, steps=40, shapes=("tree", "chain"), options=options)
    assert options.count("chain") > 30
    chain_steps = [i for i, o in enumerate(options) if o == "chain"]
    assert (sizes[chain_steps] <= 4 * 5).all()  # at most one node per draft round per request


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes must be distinct names from tree, chain"):
        registry.create("tree", "dynamic-cost", cost_model=CHEAP_DRAFT, shapes=("tree", "star"))
    with pytest.raises(ValueError, match="shapes must be distinct"):
        registry.create("tree", "dynamic-cost", cost_model=CHEAP_DRAFT, shapes=())


def test_fallback_is_per_batch_size():
    """Speculation's cost grows with the batch faster than plain decoding's: a cost curve can
    favour it for one request and not for many (what vLLM and SGLang see at large batches)."""
    curve = AffineCostModel(target_base_s=0.010, target_per_token_s=0.0005, draft_base_s=0.0005,
                            draft_per_token_s=0.00002)
    small, _ = run_steps(curve, batch=1)
    large, _ = run_steps(curve, batch=16)
    assert (small > 0).mean() > 0.9
    assert (large == 0).mean() > 0.8


def test_the_online_model_learns_the_engine_s_costs():
    truth = AffineCostModel(target_base_s=0.008, target_per_token_s=0.0002, draft_base_s=0.002,
                            draft_per_token_s=0.00005, target_per_context_token_s=1e-6,
                            step_base_s=0.001, step_per_request_s=0.0002)
    online = OnlineCostModel(CHEAP_DRAFT)  # a wrong prior
    rng = np.random.default_rng(0)
    for _ in range(300):
        b = int(rng.integers(1, 17))
        tokens = b * int(rng.integers(1, 18))
        ctx = b * int(rng.integers(20, 400))
        widths = tuple(int(w) for w in rng.integers(b, 4 * b, size=int(rng.integers(1, 7))))
        draft_s = sum(truth.draft_step_s(b, w, ctx) for w in widths)
        online.observe(StepTiming(b, tokens, ctx, widths, draft_s, truth.target_forward_s(b, tokens, ctx),
                                  truth.step_overhead_s(b)))
    for b, t, c in [(1, 1, 100), (4, 40, 800), (16, 200, 4000)]:
        assert online.target_forward_s(b, t, c) == pytest.approx(truth.target_forward_s(b, t, c), rel=0.05)
        assert online.draft_step_s(b, 4 * b, c) == pytest.approx(truth.draft_step_s(b, 4 * b, c), rel=0.05)
    assert online.step_overhead_s(8) == pytest.approx(truth.step_overhead_s(8), rel=0.05)


def test_without_observations_the_online_model_is_its_prior():
    online = OnlineCostModel(SLOW_DRAFT)
    for b, t, c in [(1, 1, 100), (4, 40, 800)]:
        assert online.target_forward_s(b, t, c) == pytest.approx(SLOW_DRAFT.target_forward_s(b, t, c), rel=1e-6)
        assert online.draft_step_s(b, t, c) == pytest.approx(SLOW_DRAFT.draft_step_s(b, t, c), rel=1e-6)


def test_shapes_are_learnt_and_re_tried_on_one_request_in_turn():
    policy = registry.create("tree", "dynamic-cost", cost_model=SLOW_DRAFT, topk=3, frontier=3, max_depth=5)
    split = registry.get("batch-budget", "uniform")
    speculating = []
    for _ in range(60):
        spec = speculate(policy, split, 16, 16 * 4, [100] * 4,
                         lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)])
        speculating.append([i for i, t in enumerate(spec.trees) if len(t)])
    probes = [(step, rows) for step, rows in enumerate(speculating) if rows]
    # A slow draft: plain decoding wins; the tree and the chain are each learnt, then re-tried,
    # on a single request, a different one each time.
    assert all(len(rows) == 1 for _, rows in probes)
    assert [step for step, _ in probes][:2] == [0, 1]
    assert [rows[0] for _, rows in probes] == [(1 + i) % 4 for i in range(len(probes))]  # in turn


def test_realism_is_a_ratio_of_averages_not_an_average_of_ratios():
    """Steps expected to yield 2.5 and 5 tokens that yield 5 and 2.5: on average the draft's
    expectation was right (realism 1), though the mean of the per-step ratios is 1.25."""
    from specgrove.cost import OnlineCostModel

    policy = registry.create("tree", "dynamic-cost", cost_model=OnlineCostModel(CHEAP_DRAFT), shapes=("tree",))
    policy._shape, policy._probe = "tree", False
    for expected, emitted in [(2.5, 5), (5.0, 2.5)] * 50:
        policy._step_gains = [expected]
        policy.observe_step(StepTiming(1, 17, 100, (1, 4), 0.001, 0.002, 0.0005, emitted))
    assert policy.realism("tree") == pytest.approx(1.0, abs=0.1)


def test_an_option_s_slowness_is_measured_from_its_first_step():
    """An option that runs rarely (it lost) must have its time corrected as soon as one of its
    steps is measured, as the option running every step is: an average that starts at 1 would
    keep the raw model's guess for it over dozens of its steps."""
    model = OnlineCostModel(CHEAP_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("tree", "chain"))
    assert policy.slowness("chain") == 1.0  # nothing measured yet
    policy._stats["chain"] = [2.0, 4.0, 4.0]  # what chain steps have been yielding
    x = policy._features("chain", 1, 100)
    priced = policy._priced_s(x)
    assert priced == pytest.approx(4 * model.draft_step_s(1, 1, 100) + model.target_forward_s(1, 5, 100)
                                   + model.step_overhead_s(1))  # the features price as _step_s does
    policy._shape, policy._probe, policy._step_x = "chain", False, x
    policy.observe_step(StepTiming(1, 5, 100, (1, 1, 1, 1), priced, priced / 2, priced / 2, 3))  # 2x
    assert policy.slowness("chain") == pytest.approx(2.0)
    assert policy.slowness("tree") == 1.0 and policy.slowness("plain") == 1.0


def test_a_whole_batch_step_s_catch_up_counts_in_the_shape_s_slowness_a_probe_s_does_not():
    """A chain step that feeds the draft what it missed (here 200 tokens) took exactly the
    model's time for the step with those tokens. Run over the whole batch, the catch-up is the
    chain's to pay (interleaved with lookup steps it recurs every few steps): the chain's
    slowness is that step's time over the model's time for the chain alone. A probe's catch-up
    (the probed request's prompt) is priced with it: slowness 1."""
    model = OnlineCostModel(CHEAP_DRAFT)
    timings = {}
    for probe in (False, True):
        policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("chain",))
        policy._stats["chain"] = [2.0, 4.0, 4.0]
        x = policy._features("chain", 1, 100) if not probe else (4, 4, 4, 400, 1.0, 1, 5, 100, 1.0, 1)
        caught_up = (*x[:2], x[2] + 200, *x[3:])
        took = policy._priced_s(caught_up)
        assert took > policy._priced_s(x) + 190 * CHEAP_DRAFT.draft_per_token_s
        policy._shape, policy._probe, policy._step_x = "chain", probe, x
        policy.observe_step(StepTiming(1, 5, 100, (1, 1, 1, 1), took * 0.8, took * 0.15, took * 0.05, 3,
                                       catch_up_tokens=200))
        timings[probe] = (policy.slowness("chain"), took / policy._priced_s(x))
    assert timings[True][0] == pytest.approx(1.0)
    assert timings[False][0] == pytest.approx(timings[False][1]) and timings[False][0] > 1.02


@given(st.lists(st.lists(st.floats(0.1, 10.0), min_size=4, max_size=4), min_size=1, max_size=20),
       st.lists(st.floats(1e-4, 1.0), min_size=20, max_size=20))
@settings(max_examples=40, deadline=None)
def test_observations_kept_until_a_solve_sum_as_if_added_one_by_one(xs, ys):
    """The online fits add observations in one product at each solve; the sums (older ones
    forgotten more) and so the fit equal adding each as it came."""
    batched = OnlineCostModel(CHEAP_DRAFT).target
    forget = batched.forget
    a, b = batched.a.copy(), batched.b.copy()
    for x, y in zip(xs, ys):
        batched.observe(x, y)
        v = np.asarray(x) / y
        a, b = forget * a + np.outer(v, v), forget * b + v
    batched.solve()
    assert np.allclose(batched.a, a, rtol=1e-9) and np.allclose(batched.b, b, rtol=1e-9)


def _explorations(share, steps=400):
    """Step indices at which an online policy explored, at batch 4, when an exploration takes
    20 plain steps' time and emits 5 tokens (a plain step: 4)."""
    model = OnlineCostModel(SLOW_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, topk=3, frontier=3, max_depth=5,
                             shapes=("tree",))
    policy.explore_share = share
    split = registry.get("batch-budget", "uniform")
    plain_s = SLOW_DRAFT.target_forward_s(4, 4, 400)
    explored = []
    for step in range(steps):
        spec = speculate(policy, split, 16, 64, [100] * 4,
                         lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)])
        if policy._exploring:
            explored.append(step)
        took, emitted = (20 * plain_s, 5) if spec.num_rounds else (plain_s, 4)
        policy.observe_step(StepTiming(4, 4 + sum(len(t) for t in spec.trees), 400, tuple(spec.round_widths),
                                       took / 2, took / 2, 0.0, emitted))
    return explored


def test_an_exploration_that_lost_time_waits_for_its_share_of_the_time():
    """After an exploration that lost about 19 plain steps' time, the next waits for that over
    ``explore_share`` (3%: some 630 plain steps), not for the 16 steps of the schedule. With a
    share that makes the wait short, the tree is first probed on ``trust_requests`` (8)
    requests, every other step from step 3 (after plain decoding is timed), each once the last
    one's wait is paid; then the schedule alone decides (16 steps of the verdict, then 33, 65
    and 129 apart)."""
    assert _explorations(0.03) == [3]
    assert _explorations(100.0) == [3, 5, 7, 9, 11, 13, 15, 17, 50, 115, 244]


def test_one_slow_first_step_does_not_stand_for_an_option_s_next_ten():
    """An option's first measured step took twice the model's time, the next two exactly it:
    its slowness is their running mean (4/3), not an average that keeps 0.9 of the outlier."""
    model = OnlineCostModel(CHEAP_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("tree",))
    policy._shape, policy._probe = None, False
    x = policy._features("plain", 4, 400)
    for factor in (2.0, 1.0, 1.0):
        policy._step_x = x
        took = factor * policy._priced_s(x)
        policy.observe_step(StepTiming(4, 4, 400, (), 0.0, took, 0.0, 4))
    assert policy.slowness("plain") == pytest.approx(4 / 3, rel=0.02)  # the model refits at 8 steps


def test_a_refit_model_is_not_corrected_twice():
    """Plain steps that take twice what the start-up model says. The online model learns
    their time within a few steps (it refits every 8), and the slowness, priced by the model
    as it stands now, then falls back to 1: the corrected time stays the real one. A ratio
    to the predictions made at the time would apply the correction twice: 1.9x the real
    step after 4 steps, 1.5x after 8 (measured before this was fixed)."""
    model = OnlineCostModel(CHEAP_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("tree",))
    n, ctx = 8, 800
    real = 2 * (CHEAP_DRAFT.target_forward_s(n, n, ctx) + CHEAP_DRAFT.step_overhead_s(n))
    policy._shape, policy._probe = None, False
    for step in range(1, 13):
        policy._step_x = policy._features("plain", n, ctx)
        policy.observe_step(StepTiming(n, n, ctx, (), 0.0, real * 0.9, real * 0.1, n))
        corrected = policy.slowness("plain") * (model.target_forward_s(n, n, ctx) + model.step_overhead_s(n))
        assert corrected == pytest.approx(real, rel=0.05), step


def test_a_probe_measures_how_far_off_the_model_is_for_its_shape():
    """A probe (one request of four speculates) is priced as such by the model: one request's
    draft rounds, the batch's target forward. A probe that takes three times that makes the
    shape three times slower before the whole batch ever runs it; the draft fit learns nothing
    from its one-request rounds."""
    model = OnlineCostModel(CHEAP_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("tree", "chain"))
    policy._shape, policy._probe, policy._step_x = "tree", True, None
    predicted = (3 * model.draft_step_s(1, 7 / 3, 100) + model.target_forward_s(4, 16, 400)
                 + model.step_overhead_s(4))
    draft_fit, target_fit = model.draft.b.copy(), model.target.b.copy()  # the fits' accumulated data
    policy.observe_step(StepTiming(4, 16, 400, (1, 3, 3), predicted, 2 * predicted, 0.0, 6))
    assert policy.slowness("tree") == pytest.approx(3.0)
    assert policy.slowness("chain") == 1.0 and policy.slowness("plain") == 1.0
    model.draft.solve(), model.target.solve()  # observations enter the fits' sums at a solve
    assert np.array_equal(model.draft.b, draft_fit)
    assert not np.array_equal(model.target.b, target_fit)  # the batch's verify forward is learnt from


def test_a_draft_that_understates_its_chances_grows_deeper_once_measured():
    """The round test weighs the frontier's path scores by how this shape's nodes were really
    accepted: a draft whose scores say 0.1 where nodes pass three times as often earns the
    round that its raw scores would refuse."""
    from specgrove.cost import OnlineCostModel

    cost = AffineCostModel(target_base_s=0.002, target_per_token_s=0.0, draft_base_s=0.0005, draft_per_token_s=0.0)
    policy = registry.create("tree", "dynamic-cost", cost_model=OnlineCostModel(cost), shapes=("chain",))
    policy._shape = "chain"
    assert policy.node_realism("chain") == 1.0
    # Raw: 0.2 of a 2 ms forward saved (0.4 ms) does not pay a 0.5 ms draft round.
    assert not policy.worth_another_round([0.2])
    policy._emitted["chain"], policy._expected["chain"] = 4.0, 2.0  # 3 accepted where 1 was expected
    assert policy.node_realism("chain") == pytest.approx(3.0)
    assert policy.worth_another_round([0.2])  # 0.6 tokens: 1.2 ms saved
    policy._emitted["chain"], policy._expected["chain"] = 41.0, 2.0
    assert policy.node_realism("chain") == 4.0  # kept within bounds
    policy._emitted["chain"], policy._expected["chain"] = 1.0, 3.0
    assert policy.node_realism("chain") == 0.25


def test_what_the_draft_has_yet_to_see_makes_a_switch_to_a_draft_shape_dearer():
    # The executor tells the policy the tokens its draft must catch up on (a lazy draft's
    # prompts): switching to a draft shape pays for them, spread over explore_every steps.
    policy = registry.create("tree", "dynamic-cost", cost_model=CHEAP_DRAFT, topk=3, frontier=3, max_depth=5,
                             shapes=("tree",))
    split = registry.get("batch-budget", "uniform")
    draft = lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)]  # noqa: E731
    speculate(policy, split, 16, 64, [100] * 4, draft)  # learns what the tree yields
    free, plain = policy._rate("tree", 4, 400), policy._rate("plain", 4, 400)
    policy.see_backlog(4 * 300)  # four prompts of 300 tokens
    dear = policy._rate("tree", 4, 400)
    step_s = policy._stats["tree"][0] * policy.realism("tree") / free  # the tree step, as priced
    catch_up_s = CHEAP_DRAFT.draft_step_s(4, 4 + 1200, 400) - CHEAP_DRAFT.draft_step_s(4, 4, 400)
    assert dear == pytest.approx(free * step_s / (step_s + catch_up_s / policy.explore_every))
    assert policy._rate("plain", 4, 400) == plain  # plain decoding feeds the draft nothing
    policy.see_backlog(0)
    assert policy._rate("tree", 4, 400) == pytest.approx(free)


def test_a_shape_stands_as_the_verdict_only_after_trust_requests_trees():
    """Online, a cheap draft (every shape pays): the chain is first probed on one request at a
    time, ``trust_requests`` times, each probe once the plain steps have paid for the last one;
    only then does the whole batch speculate. One probe's tree is one sample."""
    model = OnlineCostModel(CHEAP_DRAFT)
    policy = registry.create("tree", "dynamic-cost", cost_model=model, shapes=("chain",))
    policy.explore_share = 100.0  # a probe's wait: one plain step
    split = registry.get("batch-budget", "uniform")
    speculating = []  # per step: requests with a tree
    for _ in range(80):
        spec = speculate(policy, split, 16, 64, [100] * 4,
                         lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)])
        with_tree = sum(len(t) > 0 for t in spec.trees)
        speculating.append(with_tree)
        tokens = 4 + sum(len(t) for t in spec.trees)
        draft_s = sum(CHEAP_DRAFT.draft_step_s(4, w, 400) for w in spec.round_widths)
        policy.observe_step(StepTiming(4, tokens, 400, tuple(spec.round_widths), draft_s,
                                       CHEAP_DRAFT.target_forward_s(4, tokens, 400), 0.0,
                                       4 + sum(min(len(t), 3) for t in spec.trees)))
    first_full = speculating.index(4)
    assert speculating[:first_full].count(1) == policy.trust_requests  # the probes, one request each
    assert set(speculating[:first_full]) == {0, 1}
    assert policy._seen["chain"] >= policy.trust_requests
