"""The same policy makes the same decisions in the simulator and in the executor.

Both worlds run ``specgrove.policies.speculation.speculate``; what could still differ is the
glue around it: how each world builds the policy from its configuration, the budget total it
asks the batch-budget policy to split, and the contexts it passes to selection. This test
records every draft answer the real draft model gave in an engine run, replays those answers
to the simulator's exact acceptance model (built from a scenario, as ``specgrove sim`` builds
it), and checks, step by step, that the simulator asks for the same expansions and ends with
the same candidates, budgets and trees.
"""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

from dataclasses import replace

import numpy as np
from tiny_models import VOCAB, perturbed_copy, tiny

from specgrove.cost import AffineCostModel
from specgrove.executor import draft_side, draft_worker
from specgrove.executor.engine import EngineConfig, SpecEngine, build_engine
from specgrove.sim.build import resolve
from specgrove.sim.cluster import SimCluster

BUDGET = 6
COST = AffineCostModel(5e-3, 4e-5, 3e-4, 1e-5, 1e-6, 0.0)  # speculation pays: budgets get split
TREE_OPTIONS = {
    "dynamic": {"topk": 3, "frontier": 3, "max_depth": 4},
    # Lookup's chances given to both worlds (the simulator would otherwise take its own).
    "dynamic-cost": {"topk": 3, "frontier": 3, "max_depth": 4, "lookup_accept": [[0.4, 0.6], [0.7], [0.9, 0.8]]},
    "sequoia": {"acceptance": [0.6, 0.2, 0.05], "max_depth": 4},
    "dynamic-lookup": {"topk": 3, "frontier": 3, "max_depth": 4, "lookup_length": 4,
                       "lookup_accept": [[0.4, 0.6], [0.7], [0.9, 0.8]]},
}


def executor_steps(method, batch_budget, monkeypatch):
    """Run the engine; per step: the contexts, every round's (ids, expansions, answers), and
    the speculation it verified."""
    target = tiny("llama", seed=7, sharpness=4.0)
    draft = perturbed_copy(target, noise=0.08)  # close, but with uneven confidence
    options = dict(TREE_OPTIONS[method])
    if method == "dynamic-cost":
        options["cost_model"] = COST
    config = EngineConfig(method=method, budget=BUDGET, batch_budget=batch_budget, max_batch=3)
    engine = build_engine(target, draft, config, options)
    steps, rounds, matches = [], [], {}
    original_round, original_speculate = draft_worker.DraftWorker.round, SpecEngine.speculate
    original_lookup = draft_side.LocalDraft.lookup

    def recording_lookup(self, seq, k):
        match = original_lookup(self, seq, k)
        matches[[s.request_id for s in engine.active].index(seq.request_id)] = match
        return match

    def recording_round(self, every, ids, expansions):
        answers = original_round(self, every, ids, expansions)
        rounds.append((list(ids), expansions, answers))
        return answers

    def recording_speculate(self, seqs):
        rounds.clear()
        matches.clear()
        contexts = [s.target_len for s in seqs]
        spec = original_speculate(self, seqs)
        steps.append((contexts, list(rounds), spec, dict(matches)))
        return spec

    monkeypatch.setattr(draft_worker.DraftWorker, "round", recording_round)
    monkeypatch.setattr(SpecEngine, "speculate", recording_speculate)
    monkeypatch.setattr(draft_side.LocalDraft, "lookup", recording_lookup)
    rng = np.random.default_rng(1)
    for length in (9, 14, 5, 11):
        engine.add_request(rng.integers(1, VOCAB, int(rng.integers(3, 9))).tolist(), length)
    engine.run()
    return steps


def simulator_acceptance(method, batch_budget):
    """The exact acceptance model a ``specgrove sim`` run of this policy would use."""
    scenario, built = resolve({
        "cluster": {"gpu": "cpu-2core", "gpus_per_node": 1, "intra_link": "shared-memory"},
        "models": {"pair": "demo"},
        "deployment": {"max_batch": 3},
        "acceptance": {"mode": "exact"},
        "policies": {"tree": method, "tree_options": TREE_OPTIONS[method], "tree_budget": BUDGET,
                     "batch_budget": batch_budget},
    })
    cluster = SimCluster(scenario, replace(built, cost=COST), seed=0)
    return cluster.replicas[0].planner.acceptance


@pytest.mark.parametrize("method", ["dynamic", "dynamic-cost", "sequoia", "dynamic-lookup"])
@pytest.mark.parametrize("batch_budget", ["uniform", "greedy-global"])
def test_simulator_and_executor_decide_alike(method, batch_budget, monkeypatch):
    steps = executor_steps(method, batch_budget, monkeypatch)
    acceptance = simulator_acceptance(method, batch_budget)
    batch_sizes = {len(contexts) for contexts, _, _, _ in steps}
    assert max(batch_sizes) == 3 and min(batch_sizes) < 3  # full batches, and a draining one
    uneven = lookups = 0
    for index, (contexts, rounds, real, matches) in enumerate(steps):
        replay = iter(rounds)

        def recorded_answers(ids, expansions):
            want_ids, want_expansions, answers = next(replay)
            assert ids == want_ids, f"step {index}: the simulator asked other requests"
            for got, want in zip(expansions, want_expansions):
                np.testing.assert_array_equal(got.nodes, want.nodes)
                np.testing.assert_array_equal(got.parents, want.parents)
                np.testing.assert_array_equal(got.tokens, want.tokens)
                assert got.k == want.k
            return answers

        # The requests' prompt-lookup matches, as the executor found them in their contexts.
        sim = acceptance.speculate(np.zeros(len(contexts), dtype=np.int64), np.array(contexts),
                                   np.random.default_rng(0), draft=recorded_answers,
                                   lookup=lambda i, k, matches=matches: (matches[i][0][:k], matches[i][1]))
        assert next(replay, None) is None, f"step {index}: the simulator ran fewer draft rounds"
        assert sim.budgets == real.budgets, f"step {index}"
        assert sim.round_widths == real.round_widths
        assert sim.lookup_orders == real.lookup_orders
        # A lookup step (dynamic-cost), or a match merged into a draft tree (dynamic-lookup).
        lookups += bool(real.lookup_orders) or (method == "dynamic-lookup" and any(o for _, o in matches.values()))
        for got, want in zip(sim.candidates + sim.trees, real.candidates + real.trees):
            assert got == want, f"step {index}"
        uneven += len(set(real.budgets)) > 1
    assert len(steps) > 5
    if method in ("dynamic-cost", "dynamic-lookup"):
        assert lookups > 0  # it chose prompt lookup somewhere: matches were replayed too
    if batch_budget == "greedy-global" and method != "sequoia":
        assert uneven > 0  # the split really was uneven somewhere: budgets were tested
