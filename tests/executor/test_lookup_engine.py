"""Prompt lookup through the engine: sampled tokens follow the target's exact law (and a broken
residual is caught), the trace says which trees were lookup chains and from which match order,
``dynamic-cost`` on the demo pair mixes lookup steps into its run and stays greedy-lossless,
and a draft in its own process sends the orders over the wire."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from law_check import chi_square_p, peaked_pair, rank_counts, run_engine, target_laws

from specgrove.executor import verify
from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import load_pair
from specgrove.executor.methods import METHOD_OPTIONS
from specgrove.executor.parallel.launch import PairSource
from specgrove.executor.parallel.placement import Placement
from specgrove.executor.parallel.replica import open_replica
from specgrove.executor.sampling import SamplingParams

PLAIN = SamplingParams(1.0)
NUM, NEW = 1500, 6


@pytest.fixture(scope="module")
def pair():
    return peaked_pair()


@pytest.fixture(scope="module")
def prompt(pair):
    """The target's own greedy continuation of 4 8 15, which falls into a loop (20 26 20 26):
    lookup proposes the loop, and the peaked target often samples it."""
    ids = torch.tensor([[4, 8, 15]])
    out = pair[0].generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                           min_new_tokens=12, pad_token_id=0)
    return out[0].tolist()


def _ranks_p(target, run):
    seqs = [run.prompts[r] + run.outputs[r] for r in range(len(run.outputs))]
    law = target_laws(target, seqs, PLAIN)
    laws = [law[i, len(run.prompts[i]) - 1 + k] for i in range(len(seqs)) for k in range(NEW)]
    tokens = [o[k] for o in run.outputs for k in range(NEW)]
    observed, expected = rank_counts(np.array(laws), np.array(tokens))
    return chi_square_p(observed, expected)


@pytest.fixture(scope="module")
def sampled(pair, prompt):
    target, draft = pair
    return run_engine(target, draft, [prompt] * NUM, [PLAIN] * NUM, NEW, method="lookup")


def test_lookup_chains_are_verified_and_accepted(sampled):
    assert all(len(o) == NEW for o in sampled.outputs)
    accepted = np.array(list(sampled.first_verdicts.values()))
    assert (accepted > 0).mean() > 0.1  # the first chain is often accepted in part: lookup is exercised


def test_sampled_tokens_follow_the_target_law(pair, sampled):
    assert _ranks_p(pair[0], sampled) > 1e-3


def test_dynamic_lookup_sampled_tokens_follow_the_target_law(pair, prompt):
    """Draft trees with the lookup chain merged in (siblings from two sources, all chosen
    deterministically): the sampled tokens still follow the target's law."""
    target, draft = pair
    run = run_engine(target, draft, [prompt] * NUM, [PLAIN] * NUM, NEW, method="dynamic-lookup")
    accepted = np.array(list(run.first_verdicts.values()))
    assert (accepted > 0).mean() > 0.1
    assert _ranks_p(target, run) > 1e-3


def test_a_broken_residual_is_caught_on_lookup_chains(pair, prompt, monkeypatch):
    # After rejecting a chain's token x, draw from p itself (x again possible): biased to x.
    target, draft = pair
    monkeypatch.setattr(verify, "_residual", lambda p, q: p)
    run = run_engine(target, draft, [prompt] * NUM, [PLAIN] * NUM, NEW, method="lookup")
    assert _ranks_p(target, run) < 1e-6


@pytest.fixture(scope="module")
def demo():
    pair = load_pair()
    lines = ["def area(self):\n        return self.width * self.height\n\n    def perimeter(self):\n        return",
             "for key in keys:\n    if key in seen:\n        continue\n    seen.add(key)\n    for key in",
             "import os\nimport sys\nimport json\nimport re\nimport", "x = self.x\ny = self.y\nz = self."]
    return pair, [pair.tokenizer(t)["input_ids"] for t in lines]


def _generate(pair, prompts, method, batch, records=None, n=40):
    config = EngineConfig(method=method, budget=16, max_batch=batch, eos_token_id=None)
    engine = build_engine(pair.target, pair.draft, config, dict(METHOD_OPTIONS.get(method, {})),
                          on_trace=None if records is None else records.append)
    ids = [engine.add_request(p, n) for p in prompts]
    out = engine.run()
    return [out[i] for i in ids]


@pytest.mark.parametrize("batch", [1, 4])
def test_dynamic_cost_mixes_lookup_steps_in_and_stays_lossless(demo, batch):
    pair, prompts = demo
    records = []
    got = _generate(pair, prompts, "dynamic-cost", batch, records)
    assert got == _generate(pair, prompts, "ar", batch)
    steps = [r for r in records if type(r).__name__ == "StepRecord"]
    lookups = [s for s in steps if any(q.lookup_order >= 0 for q in s.requests)]
    assert lookups, "repetitive code: some steps verify lookup chains"
    assert all(s.draft_rounds == 0 for s in lookups)  # no draft round on a lookup step
    assert sum(q.accepted_len for s in lookups for q in s.requests) > 0


@pytest.mark.parametrize("batch", [1, 4])
def test_dynamic_lookup_is_greedy_lossless_on_the_demo_pair(demo, batch):
    pair, prompts = demo
    assert _generate(pair, prompts, "dynamic-lookup", batch) == _generate(pair, prompts, "ar", batch)


def test_a_separate_draft_sends_the_lookup_orders_over_the_wire(demo):
    pair, prompts = demo
    records = _separate(pair, prompts, "lookup", records=[])
    assert records[0] == _generate(pair, prompts, "lookup", 4, n=24)
    orders = [q.lookup_order for r in records[1] if type(r).__name__ == "StepRecord" for q in r.requests]
    assert orders and min(orders) >= 0 and max(orders) >= 1


def test_dynamic_cost_on_a_separate_draft_learns_from_the_steps_and_speculates(demo):
    """The draft rank's policy makes the step's choices, so it gets each step's timing over
    the wire: without it `dynamic-cost` there never finished timing plain decoding."""
    pair, prompts = demo
    out, records = _separate(pair, prompts, "dynamic-cost", records=[])
    assert out == _generate(pair, prompts, "ar", 4, n=24)
    steps = [r for r in records if type(r).__name__ == "StepRecord"]
    assert sum(r.tokens_in_forward > r.batch_size for r in steps) > len(steps) // 4


def _separate(pair, prompts, method, records):
    config = EngineConfig(method=method, budget=16, max_batch=4, eos_token_id=None)
    replica = open_replica(pair, PairSource(), Placement(draft_placement="separate"), config,
                           dict(METHOD_OPTIONS.get(method, {})), on_trace=records.append)
    try:
        ids = [replica.engine.add_request(p, 24) for p in prompts]
        out = replica.engine.run()
    finally:
        replica.close()
    return [out[i] for i in ids], records
