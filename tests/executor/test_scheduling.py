"""Serving-side engine behaviour: admission by the registered scheduler policy (the objects
the simulator calls), per-request sampling in one batch, cancellation between steps."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import time

from tiny_models import perturbed_copy, tiny

from specgrove import registry
from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.sampling import SamplingParams

# (max_new_tokens, deadline in seconds from now) per request, added in this order.
QUEUE = [(30, 9.0), (5, 3.0), (12, 1.0), (5, None), (20, 2.0)]
ADMITTED = {
    "fcfs": [0, 1, 2, 3, 4],  # arrival order
    "sjf": [1, 3, 2, 4, 0],  # fewest tokens to go; ties by arrival
    "edf": [2, 4, 1, 0, 3],  # earliest deadline; none last
}


@pytest.fixture(scope="module")
def models():
    target = tiny("llama", seed=3, sharpness=8.0)
    return target, perturbed_copy(target, noise=0.01)


@pytest.mark.parametrize("scheduler", sorted(ADMITTED))
def test_admission_follows_the_scheduler_policy(models, scheduler):
    target, draft = models
    engine = build_engine(target, draft, EngineConfig(method="chain", budget=4, max_batch=1, scheduler=scheduler),
                          {"length": 4})
    assert type(engine.scheduler) is registry.get("scheduler", scheduler)  # the simulator's class
    now = time.perf_counter()
    for n, deadline in QUEUE:
        engine.add_request([3, 4, 5], n, deadline_s=None if deadline is None else now + deadline)
    order = []
    while engine.has_work:
        for rid, _ in engine.step():
            if rid not in order:
                order.append(rid)
    assert order == ADMITTED[scheduler]


def test_greedy_requests_are_unchanged_by_sampled_neighbours(models):
    target, draft = models
    prompts = [[3, 9, 27], [5, 6, 7, 8], [11, 2], [4, 4, 4, 4, 4]]
    config = EngineConfig(method="dynamic", budget=8, max_batch=4)
    alone = build_engine(target, draft, config, {"topk": 3, "frontier": 3, "max_depth": 4})
    for p in prompts[:2]:
        alone.add_request(p, 16)
    want = alone.run()
    mixed = build_engine(target, draft, config, {"topk": 3, "frontier": 3, "max_depth": 4})
    greedy = [mixed.add_request(p, 16) for p in prompts[:2]]
    sampled = [mixed.add_request(p, 16, SamplingParams(1.0, 0.9), seed=i) for i, p in enumerate(prompts[2:])]
    got = mixed.run()
    assert [got[r] for r in greedy] == [want[0], want[1]]
    assert all(len(got[r]) == 16 for r in sampled)


def test_cancel_frees_the_row_between_steps(models):
    target, draft = models
    engine = build_engine(target, draft, EngineConfig(method="chain", budget=4, max_batch=2), {"length": 4})
    a, b, c = (engine.add_request([3, 4, 5], 40) for _ in range(3))
    engine.step()
    assert len(engine.active) == 2 and len(engine.waiting) == 1
    assert engine.cancel(a) and engine.cancel(c)  # one running, one waiting
    assert not engine.cancel(999)
    engine.step()
    assert [s.request_id for s in engine.active] == [b] and not engine.waiting
    assert engine.finished[a].is_cancelled and engine.finished[c].is_cancelled
    out = engine.run()
    assert len(out[b]) == 40
