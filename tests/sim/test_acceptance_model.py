"""The acceptance model against closed-form expected accepted lengths.

With the draft's confidence fixed (concentration 0), top-1 probability m and the rest shared
geometrically (rank 2 gets (1 - m)(1 - tail_ratio)), every tree is the same, and the walk
accepts child i with probability a_i = scale * p_i ** gamma (renormalised over siblings when
they sum past 1). The expected number of accepted nodes is then a sum over root-to-node paths
of the product of the a's along them, which the tests work out by hand.
"""

import numpy as np
import pytest
from sim_scenarios import small

from specgrove import registry
from specgrove.sim.acceptance import ExactAcceptance, SyntheticDraft, TabulatedAcceptance
from specgrove.sim.api import run_scenario

UNIFORM = registry.get("batch-budget", "uniform")


def sample_emitted(acceptance, domains, steps, seed=0):
    """Emitted tokens (accepted + 1) per request over ``steps`` batched steps."""
    rng = np.random.default_rng(seed)
    domains = np.asarray(domains, dtype=np.int64)
    contexts = np.zeros(len(domains), dtype=np.int64)
    return np.stack([acceptance.step(domains, contexts, rng).emitted for _ in range(steps)])


def assert_mean(samples, expected, sigmas=4.0):
    samples = np.asarray(samples, dtype=float).ravel()
    se = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) < sigmas * se + 1e-12, (samples.mean(), expected, se)


def fixed(m, **kw):
    return SyntheticDraft(confidence_mean=m, confidence_concentration=0.0, **kw)


def test_accept_probs():
    np.testing.assert_allclose(fixed(0.8, scale=0.5, gamma=2.0).accept_probs(np.array([0.8, 0.1])), [0.32, 0.005])
    # 1.5 * [0.6, 0.2] = [0.9, 0.3] sums past 1: renormalised to [0.75, 0.25].
    np.testing.assert_allclose(fixed(0.6, scale=1.5).accept_probs(np.array([0.6, 0.2])), [0.75, 0.25])


def test_chain_closed_form():
    # a = 0.9 * 0.8 ** 1.5 = 0.64399 per node; E[accepted] = a + a^2 + a^3 + a^4 = 1.4978.
    a = 0.9 * 0.8**1.5
    exact = ExactAcceptance(registry.create("tree", "chain", length=4), UNIFORM, [fixed(0.8, scale=0.9, gamma=1.5)], 4)
    emitted = sample_emitted(exact, np.zeros(256), 40)
    assert 1 + a + a**2 + a**3 + a**4 == pytest.approx(2.4978, abs=1e-4)
    assert_mean(emitted, 1 + a + a**2 + a**3 + a**4)


def test_static_tree_closed_form():
    # Widths [2, 2]: two children of the root (draft probabilities 0.6 and 0.4 * 0.5 = 0.2),
    # each with the same two children. scale = gamma = 1, so a = [0.6, 0.2] at every level:
    # E = (0.6 + 0.2) * (1 + 0.6 + 0.2) = 1.44.
    exact = ExactAcceptance(registry.create("tree", "static", widths=[2, 2]), UNIFORM, [fixed(0.6, tail_ratio=0.5)], 6)
    out = exact.step(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), np.random.default_rng(0))
    assert out.tree_sizes.tolist() == [6, 6, 6, 6]
    assert_mean(sample_emitted(exact, np.zeros(256), 40), 1 + 1.44)


def test_renormalised_siblings_closed_form():
    # scale 1.5: siblings [0.6, 0.2] -> [0.9, 0.3], renormalised to [0.75, 0.25]. A budget of
    # 3 keeps the two depth-1 nodes and the first one's top child (cumulative 0.36 beats
    # 0.12), whose lone a = 0.9 needs no renormalising:
    # E = 0.75 * (1 + 0.9) + 0.25 * 1 = 1.675.
    exact = ExactAcceptance(registry.create("tree", "static", widths=[2, 2]), UNIFORM,
                            [fixed(0.6, tail_ratio=0.5, scale=1.5)], 3)
    assert_mean(sample_emitted(exact, np.zeros(256), 40), 1 + 1.675)


def two_domains():
    # "code": m 0.8, scale 1: a = 0.8;  "chat": m 0.5, scale 0.5: a = 0.25.
    drafts = [fixed(0.8), fixed(0.5, scale=0.5)]
    expected = [1 + 0.8 + 0.8**2 + 0.8**3, 1 + 0.25 + 0.25**2 + 0.25**3]  # 2.952, 1.328
    return drafts, expected


def test_each_domain_accepts_at_its_own_rate():
    drafts, expected = two_domains()
    exact = ExactAcceptance(registry.create("tree", "chain", length=3), UNIFORM, drafts, 3)
    domains = np.arange(256) % 2
    emitted = sample_emitted(exact, domains, 40)
    for d in (0, 1):
        assert_mean(emitted[:, domains == d], expected[d])


def test_tabulated_draws_each_domain_from_its_own_table():
    drafts, expected = two_domains()
    exact = ExactAcceptance(registry.create("tree", "chain", length=3), UNIFORM, drafts, 3)
    table = TabulatedAcceptance(exact, np.random.default_rng(1), context_tokens=0, num_samples=4096)
    domains = np.arange(256) % 2
    emitted = sample_emitted(table, domains, 40, seed=2)
    for d in (0, 1):
        # The table itself is a finite sample: allow its error too.
        assert emitted[:, domains == d].mean() == pytest.approx(expected[d], rel=0.03)


def test_a_scenario_applies_each_domains_draft():
    drafts, expected = two_domains()
    result = run_scenario(small(
        duration_s=20.0,
        workload__rate=5.0,
        workload__domains={"code": 1.0, "chat": 1.0},
        workload__output={"dist": "fixed", "value": 241},
        acceptance__mode="exact",
        acceptance__draft={"confidence_mean": 0.8, "confidence_concentration": 0.0},
        acceptance__domains={"chat": {"confidence_mean": 0.5, "scale": 0.5}},
        policies__tree_options={"length": 3},
        policies__tree_budget=3,
    ))
    for name, want in (("code", expected[0]), ("chat", expected[1])):
        taus = [r["tau"] for r in result.requests if r["domain"] == name]
        assert len(taus) > 20
        # A request's tau: its 240 decode tokens over its steps; the last step is cut to
        # what is left, which lowers tau by under 1%.
        assert np.mean(taus) == pytest.approx(want, rel=0.03)


def test_dynamic_lookup_in_exact_mode_adds_the_match_as_a_branch_of_its_own():
    """The simulated matches are placeholders (negative tokens, never a draft rank), so a
    merged chain hangs from the root beside the draft's nodes and is walked by its scores.
    With a sure match every step it lifts the mean emitted tokens over ``dynamic``'s."""
    from specgrove.sim.lookup import SyntheticLookup

    drafts = [fixed(0.5, tail_ratio=0.5)]
    lookup = SyntheticLookup(orders=(0.0, 0.0, 1.0), accept=((0.5,), (0.5,), (0.95,)))
    hybrid = registry.create("tree", "dynamic-lookup", topk=2, frontier=2, max_depth=3, lookup_length=3,
                             lookup_accept=[list(a) for a in lookup.accept])
    exact = ExactAcceptance(hybrid, UNIFORM, drafts, 8, lookup=lookup)
    out = exact.step(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), np.random.default_rng(0))
    assert all((t.tokens < 0).sum() == 3 for t in out.trees)  # the whole sure chain kept
    assert all(len(t) == 8 for t in out.trees) and out.lookup_orders == ()
    plain = ExactAcceptance(registry.create("tree", "dynamic", topk=2, frontier=2, max_depth=3), UNIFORM, drafts, 8,
                            lookup=lookup)
    assert np.mean(sample_emitted(exact, np.zeros(64), 30)) > np.mean(sample_emitted(plain, np.zeros(64), 30)) + 0.3
