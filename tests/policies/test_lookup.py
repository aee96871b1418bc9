"""Prompt lookup: the n-gram index finds what a brute-force scan of the context finds; the
fixed ``lookup`` method verifies whole matches; ``dynamic-cost`` keeps the part of a match that
pays at this batch size's token prices, learns each order's acceptance from every step's
emitted tokens, and never offers lookup where no lookup is given (the simulator without one).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specgrove import registry
from specgrove.cost import AffineCostModel, OnlineCostModel, StepTiming
from specgrove.policies import speculate
from specgrove.policies.lookup import NgramIndex, chain_tree, merge_chain
from specgrove.policies.synthetic import MarkovPair
from specgrove.sim.lookup import SyntheticLookup
from specgrove.tree import Tree, select_top

UNIFORM = registry.get("batch-budget", "uniform")
PAIR = MarkovPair.random(vocab=24, seed=5, agreement=0.9, peak=0.05)


def brute_force(tokens, k, max_n, min_n):
    """The latest earlier occurrence of the longest suffix (max_n down to min_n) and what followed."""
    for n in range(min(max_n, len(tokens)), min_n - 1, -1):
        suffix = tokens[len(tokens) - n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start:start + n] == suffix:
                return tokens[start + n:start + n + k], n
    return [], 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.integers(1, 4), st.integers(1, 4), st.integers(0, 6),
       st.lists(st.integers(1, 7), max_size=8))
def test_the_index_finds_what_a_scan_finds(tokens, max_n, min_n, k, chunks):
    min_n = min(min_n, max_n)
    index = NgramIndex(max_n, min_n)
    at = 0
    for size in chunks + [len(tokens)]:  # fed in pieces, as a request's tokens arrive
        index.extend(tokens[at:at + size])
        at = min(at + size, len(tokens))
        assert index.match(k) == (brute_force(tokens[:at], k, max_n, min_n) if k else ([], 0))


def test_golden_matches():
    index = NgramIndex(3)
    index.extend([7, 1, 2, 3, 9, 1, 2])
    assert index.match(4) == ([3, 9, 1, 2], 2)  # "1 2" occurred before, followed by 3 9 1 2
    index.extend([5])
    assert index.match(4) == ([], 0)  # 5 never occurred before
    index.extend([1, 2])
    assert index.match(2) == ([5, 1], 2)  # the latest earlier "1 2" wins
    with pytest.raises(ValueError, match="min_n <= max_n"):
        NgramIndex(2, 3)


def test_a_chain_tree_is_a_path_of_sure_proposals():
    tree = chain_tree([4, 5, 6])
    assert tree.parents.tolist() == [-1, 0, 1] and tree.tokens.tolist() == [4, 5, 6]
    assert tree.probs.tolist() == [1.0, 1.0, 1.0]


def test_golden_merge_of_a_chain_into_a_draft_tree():
    """Draft tree: root -> 5 (0.6) -> 7 (0.5 of it); root -> 6 (0.3). Chain 5, 8 with scores
    0.9, 0.45: node 5 rises to 0.9 (its child 7 keeps its 0.3: 1/3 of the new parent), and 8
    hangs below 5 as a new node scored 0.45."""
    tree = Tree(np.array([-1, 0, -1]), np.array([5, 7, 6]), np.array([0.6, 0.5, 0.3]))
    merged = merge_chain(tree, [5, 8], [0.9, 0.45])
    assert merged.parents.tolist() == [-1, 0, -1, 0]
    assert merged.tokens.tolist() == [5, 7, 6, 8]
    assert np.allclose(merged.cum_probs, [0.9, 0.3, 0.3, 0.45])
    # A chain below the tree's surer node keeps the surer score; a chain off the root is new.
    assert np.allclose(merge_chain(tree, [5], [0.2]).cum_probs, [0.6, 0.3, 0.3])
    off = merge_chain(tree, [9, 5], [0.4, 0.39])
    assert off.parents.tolist() == [-1, 0, -1, -1, 3] and np.allclose(off.cum_probs[3:], [0.4, 0.39])
    assert merge_chain(tree, [], []) is tree


@given(st.integers(0, 2**31 - 1), st.integers(0, 12), st.lists(st.integers(0, 5), max_size=5))
@settings(max_examples=60, deadline=None)
def test_a_merged_chain_keeps_the_tree_and_its_scores_never_rise_along_a_path(seed, size, chain):
    rng = np.random.default_rng(seed)
    parents, tokens, probs = [], [], []
    for i in range(size):  # a random tree over a small vocabulary (distinct siblings)
        p = int(rng.integers(-1, i)) if i else -1
        taken = {t for q, t in zip(parents, tokens) if q == p}
        free = [t for t in range(6) if t not in taken]
        if not free:
            break
        parents.append(p), tokens.append(int(rng.choice(free))), probs.append(float(rng.uniform(0.05, 1.0)))
    tree = Tree(np.array(parents, dtype=np.int64), np.array(tokens, dtype=np.int64), np.array(probs))
    scores = np.cumprod(rng.uniform(0.1, 1.0, len(chain))).tolist()
    merged = merge_chain(tree, chain, scores)
    n = len(tree)
    assert merged.parents[:n].tolist() == tree.parents.tolist()
    assert merged.tokens[:n].tolist() == tree.tokens.tolist()
    cum = merged.cum_probs
    assert np.all(cum[:n] >= tree.cum_probs - 1e-12)  # merging only raises a node's chance
    assert all(p < 0 or cum[i] <= cum[p] + 1e-12 for i, p in enumerate(merged.parents.tolist()))
    node = -1  # the chain is a path from the root, each node as sure as its score (capped above)
    for tok, score in zip(chain, scores):
        kids = [i for i, p in enumerate(merged.parents.tolist()) if p == node and merged.tokens[i] == tok]
        assert len(kids) == 1
        cap = cum[node] if node >= 0 else 1.0
        node = kids[0]
        assert cum[node] >= min(score, cap) - 1e-12
    for b in range(len(merged) + 1):  # any best-first cut is still a tree
        select_top(merged, b)


def test_the_lookup_method_verifies_each_request_s_whole_match():
    policy = registry.create("tree", "lookup", length=3)
    matches = {0: ([5, 6, 7, 8], 2), 1: ([], 0), 2: ([9], 1)}
    spec = speculate(policy, UNIFORM, 16, 48, [10, 10, 10], lambda ids, exps: pytest.fail("no draft round"),
                     lookup=lambda i, k: (matches[i][0][:k], matches[i][1]))
    assert [t.tokens.tolist() for t in spec.trees] == [[5, 6, 7], [], [9]]
    assert spec.lookup_orders == (2, 0, 1) and spec.num_rounds == 0
    assert not policy.uses_draft(16)  # no draft model: nothing to prefill or catch up
    with pytest.raises(ValueError, match="no lookup was given"):
        speculate(policy, UNIFORM, 16, 16, [10], lambda ids, exps: [])


def _has_path(tree, tokens):
    node = -1
    for tok in tokens:
        kids = [i for i, p in enumerate(tree.parents.tolist()) if p == node and tree.tokens[i] == tok]
        if not kids:
            return False
        node = kids[0]
    return True


def test_dynamic_lookup_merges_each_request_s_match_into_its_draft_tree():
    """``dynamic-lookup`` grows the draft tree as ``dynamic`` does and merges the request's
    match in before the budget cut: a sure match (order 3, known acceptance 0.99) stays whole
    within a budget of 8, displacing the draft's least likely nodes; a request without a
    match gets exactly ``dynamic``'s tree."""
    draft = lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)]  # noqa: E731
    plain = speculate(registry.create("tree", "dynamic", topk=3, frontier=3, max_depth=4), UNIFORM, 8, 16,
                      [50, 50], draft)
    policy = registry.create("tree", "dynamic-lookup", topk=3, frontier=3, max_depth=4, lookup_length=3,
                             lookup_accept=[[0.2], [0.2], [0.99]])
    matches = {0: ([20, 21, 22, 23], 3), 1: ([], 0)}
    spec = speculate(policy, UNIFORM, 8, 16, [50, 50], draft, lookup=lambda i, k: (matches[i][0][:k], matches[i][1]))
    assert policy.lookup_length == 3 and spec.lookup_orders == ()  # a draft step, not a lookup one
    assert _has_path(spec.trees[0], [20, 21, 22]) and len(spec.trees[0]) == 8
    assert spec.trees[1] == plain.trees[1]
    assert spec.round_widths == plain.round_widths  # the same draft rounds: lookup costs none
    # An unlikely match (order 1, chance 0.2 per token) loses the budget to the draft's nodes.
    unsure = speculate(policy, UNIFORM, 8, 16, [50, 50], draft, lookup=lambda i, k: ([20, 21, 22], 1))
    assert not _has_path(unsure.trees[0], [20, 21, 22])


def test_dynamic_lookup_learns_its_matches_acceptance_from_the_emitted_tokens():
    policy = registry.create("tree", "dynamic-lookup", lookup_length=2)
    assert policy.lookup_acceptance.scores(2, 2) == pytest.approx([0.5, 0.25])  # the prior
    policy.see_matches([([7, 8], 2)])
    for _ in range(20):
        policy.observe_step(StepTiming(1, 3, 10, (), 0.0, 0.0, 0.0, 3, emitted=((7, 8, 1),)))
    assert policy.lookup_acceptance.scores(2, 2)[1] > 0.9
    # Chances given (the simulator's law) are kept: both worlds given them decide alike.
    known = registry.create("tree", "dynamic-lookup", lookup_length=2, lookup_accept=[[0.3], [0.3], [0.3]])
    known.see_matches([([7, 8], 2)])
    known.observe_step(StepTiming(1, 3, 10, (), 0.0, 0.0, 0.0, 3, emitted=((7, 8, 1),)))
    assert known.lookup_acceptance.scores(2, 2) == pytest.approx([0.3, 0.09])


def dynamic_cost(cost, **kw):
    return registry.create("tree", "dynamic-cost", cost_model=cost, topk=3, frontier=3, max_depth=4, **kw)


def lookup_step(policy, matches, contexts=None):
    contexts = contexts or [100] * len(matches)
    return speculate(policy, UNIFORM, 16, 16 * len(matches), contexts,
                     lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)],
                     lookup=lambda i, k: (matches[i][0][:k], matches[i][1]))


# A draft that cannot pay and verification tokens that cost little: lookup is the only gain.
SLOW_DRAFT = AffineCostModel(target_base_s=0.010, target_per_token_s=0.0001, draft_base_s=0.050,
                             draft_per_token_s=0.001)


def test_dynamic_cost_keeps_the_part_of_a_match_that_pays_at_the_margin():
    # Order-3 matches are accepted 90% of the time at every depth, order-1 ones 5%: a token
    # at depth j pays when its chance (the product down to it) times a plain step's time per
    # token (10.1 ms) beats what it adds to the forward (0.1 ms).
    policy = dynamic_cost(SLOW_DRAFT, lookup_accept=[[0.05], [0.5], [0.9]], shapes=("lookup",))
    spec = lookup_step(policy, [([1, 2, 3, 4, 5, 6, 7, 8], 3)])
    assert len(spec.trees[0]) == 8  # 0.9 ** 8 = 0.43 > 0.1 / 10.1
    spec = lookup_step(policy, [([1, 2, 3, 4, 5, 6, 7, 8], 1)])
    assert len(spec.trees[0]) == 1  # 0.05 pays (0.5 ms > 0.1 ms), 0.0025 does not (0.025 ms)
    # At batch 16 a plain step's time per token is a sixteenth: only the surest tokens pay.
    # Order 2 (0.5 per depth) keeps 0.5 and 0.25 (x 0.725 ms > 0.1 ms), not 0.125.
    spec = lookup_step(policy, [([1, 2, 3, 4, 5, 6, 7, 8], 2)] * 16)
    want = int(np.sum(0.5 ** np.arange(1, 9) * (0.010 + 16 * 0.0001) / 16 > 0.0001))
    assert want == 2 and [len(t) for t in spec.trees] == [want] * 16
    spec = lookup_step(policy, [([1, 2, 3, 4, 5, 6, 7, 8], 2)])
    assert len(spec.trees[0]) == 6  # at batch 1: 0.5 ** 6 x 10.1 ms = 0.16 ms


def test_dynamic_cost_chooses_lookup_only_when_the_matches_pay():
    policy = dynamic_cost(SLOW_DRAFT, lookup_accept=[[0.1], [0.5], [0.9]], shapes=("tree", "lookup"))
    policy.step_budget(0, [])  # nothing happens at budget 0
    chosen = []
    for matches in ([([1, 2, 3], 3)], [([], 0)], [([4, 5], 3)]):
        lookup_step(policy, matches)
        chosen.append(policy._shape)
    # The first step learns the tree (unknown); then no match: plain; then a sure match: lookup.
    assert chosen == ["tree", None, "lookup"]


def test_without_a_lookup_dynamic_cost_never_offers_it():
    policy = dynamic_cost(SLOW_DRAFT, lookup_accept=[[0.9], [0.9], [0.9]])
    for _ in range(30):
        spec = speculate(policy, UNIFORM, 16, 64, [100] * 4,
                         lambda ids, exps: [PAIR.drafter(3 + i)(e) for i, e in zip(ids, exps)])
        assert policy._shape != "lookup" and not spec.lookup_orders


def test_every_step_teaches_lookup_its_acceptance_from_the_emitted_tokens():
    online = OnlineCostModel(SLOW_DRAFT)
    policy = dynamic_cost(online, shapes=("lookup",))
    prior = policy.lookup_scores(2, 3).copy()
    policy.plain_first = 0
    # Three requests with order-2 matches: the first emitted the match's first two tokens then
    # another, the second its first token's rival, the third a rival and then (from a draft
    # tree, say) the match's next tokens, which count for nothing past the first miss.
    lookup_step(policy, [([5, 6, 7], 2), ([8, 9], 2), ([5, 6, 7], 2)])
    policy.observe_step(StepTiming(3, 6, 300, (), 0.0, 0.01, 0.0, 8, 0, ((5, 6, 1), (3,), (4, 6, 7, 2))))
    counts = policy.lookup_acceptance.counts[2]
    # depth 0: reached three times, accepted once; depth 1: reached and accepted once; depth 2:
    # reached once, rejected (1 != 7). Each on top of the prior's 2 pseudo-observations at 0.5.
    np.testing.assert_allclose(counts[:3], [[1 + 1, 2 + 3], [1 + 1, 2 + 1], [1 + 0, 2 + 1]])
    assert policy.lookup_scores(2, 3)[2] < prior[2]


def test_the_simulated_lookup_draws_its_orders_and_acceptance():
    model = SyntheticLookup(orders=(0.5, 0.0, 0.3), accept=((0.2,), (0.5,), (0.8, 0.5)))
    rng = np.random.default_rng(0)
    orders = model.draw_orders(20000, rng)
    np.testing.assert_allclose([np.mean(orders == n) for n in range(4)], [0.2, 0.5, 0.0, 0.3], atol=0.01)
    taken = np.array([model.accepted(3, 4, rng) for _ in range(20000)])
    # P(accepted >= j): 0.8, 0.8 * 0.5, then 0.5 on for deeper tokens.
    np.testing.assert_allclose([np.mean(taken >= j) for j in (1, 2, 3, 4)],
                               [0.8, 0.4, 0.2, 0.1], atol=0.01)
    with pytest.raises(ValueError, match="summing to at most 1"):
        SyntheticLookup(orders=(0.8, 0.4), accept=((0.5,), (0.5,)))


def test_the_simulated_lookup_draws_orders_by_context_length():
    """Per context bin its own shares; without contexts (or without bins), the overall ones,
    from the same draws."""
    model = SyntheticLookup(orders=(0.5, 0.3), accept=((0.5,), (0.5,)), context_edges=(50, 100),
                            orders_by_context=((0.1, 0.0), (0.5, 0.3), (0.0, 0.9)))
    contexts = np.repeat([10, 60, 500], 20000)
    orders = model.draw_orders(len(contexts), np.random.default_rng(0), contexts)
    for ctx, want in ((10, [0.9, 0.1, 0.0]), (60, [0.2, 0.5, 0.3]), (500, [0.1, 0.0, 0.9])):
        got = orders[contexts == ctx]
        np.testing.assert_allclose([np.mean(got == n) for n in range(3)], want, atol=0.01)
    plain = SyntheticLookup(orders=(0.5, 0.3), accept=((0.5,), (0.5,)))
    np.testing.assert_array_equal(model.draw_orders(100, np.random.default_rng(1)),
                                  plain.draw_orders(100, np.random.default_rng(1), contexts[:100]))
    with pytest.raises(ValueError, match="one more row than edges"):
        SyntheticLookup(orders=(0.5,), accept=((0.5,),), context_edges=(50,), orders_by_context=((0.5,),))
    with pytest.raises(ValueError, match="need 1 chances each"):
        SyntheticLookup(orders=(0.5,), accept=((0.5,),), context_edges=(50,), orders_by_context=((0.5,), (0.2, 0.1)))


def test_the_simulated_lookup_draws_orders_by_own_output_cached_before_context():
    """With bins of the request's own output cached, those shares are drawn (whatever the
    context bins say); without the requests' output counts, the context bins stand in."""
    model = SyntheticLookup(orders=(0.5, 0.3), accept=((0.5,), (0.5,)), context_edges=(50,),
                            orders_by_context=((0.0, 0.0), (0.0, 0.0)), generated_edges=(8, 32),
                            orders_by_generated=((0.1, 0.0), (0.5, 0.3), (0.0, 0.9)))
    generated = np.repeat([0, 10, 64], 20000)
    contexts = generated + 40
    orders = model.draw_orders(len(generated), np.random.default_rng(0), contexts, generated)
    for own, want in ((0, [0.9, 0.1, 0.0]), (10, [0.2, 0.5, 0.3]), (64, [0.1, 0.0, 0.9])):
        got = orders[generated == own]
        np.testing.assert_allclose([np.mean(got == n) for n in range(3)], want, atol=0.01)
    assert not model.draw_orders(1000, np.random.default_rng(1), contexts[:1000]).any()  # by context: no match
    with pytest.raises(ValueError, match="orders_by_generated needs one row per bin"):
        SyntheticLookup(orders=(0.5,), accept=((0.5,),), generated_edges=(8,), orders_by_generated=((0.5,),))


def test_the_simulated_lookup_draws_how_many_tokens_a_match_offers():
    """A match near the end of the context offers few tokens: per order, the law of the chain's
    length, capped by the policy's own length; without one, every match offers the cap."""
    model = SyntheticLookup(orders=(0.5, 0.5), accept=((0.5,), (0.5,)), lengths=((1.0,), (0.0, 0.5, 0.2, 0.3)))
    orders = [1, 2, 0] * 20000
    held = np.array(model.draw_lengths(orders, 3, np.random.default_rng(0)))
    assert set(held[0::3]) == {1} and set(held[2::3]) == {0}
    np.testing.assert_allclose([np.mean(held[1::3] == k) for k in (1, 2, 3)], [0.0, 0.5, 0.5], atol=0.01)
    plain = SyntheticLookup(orders=(0.5, 0.5), accept=((0.5,), (0.5,)))
    assert plain.draw_lengths([1, 2, 0], 4, np.random.default_rng(0)) == [4, 4, 0]
    with pytest.raises(ValueError, match="summing to 1"):
        SyntheticLookup(orders=(0.5,), accept=((0.5,),), lengths=((0.5, 0.2),))
