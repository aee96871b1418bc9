"""The simulator runs the registered policies themselves (never copies), and the scheduler
and router policies behave as documented on small hand-made snapshots."""

import subprocess
import sys

import numpy as np
import pytest
from sim_scenarios import small_scenario

from specgrove import registry
from specgrove.policies.router import LeastOutstanding, PowerOfTwo, ReplicaLoad, RoundRobin, SpeculationAware
from specgrove.policies.scheduler import EarliestDeadlineFirst, FirstComeFirstServed, ShortestJobFirst
from specgrove.policies.shape import Chain
from specgrove.sim.api import run_scenario
from specgrove.types import Request


def test_simulator_calls_the_registered_tree_and_router_code(monkeypatch):
    # The names the scenario uses resolve, through the registry, to the very classes the
    # policy unit tests import. Spy on their methods and check the simulator went through them.
    assert registry.get("tree", "chain") is Chain
    assert registry.get("router", "least-outstanding") is LeastOutstanding
    calls = {"grow": 0, "select": 0, "route": 0}

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    spy(Chain, "grow")
    spy(Chain, "select")
    spy(LeastOutstanding, "route")
    result = run_scenario(small_scenario(duration_s=2.0, acceptance__mode="exact", deployment__num_replicas=2))
    assert calls["route"] == result.summary["num_requests"] > 0
    assert calls["grow"] > 0 and calls["select"] == calls["grow"]


def reqs():
    return [
        Request(0, 10, 100, arrival_s=0.0, deadline_s=5.0),
        Request(1, 10, 20, arrival_s=1.0, deadline_s=2.0),
        Request(2, 10, 20, arrival_s=0.5, deadline_s=9.0),
    ]


def test_scheduler_orders():
    assert FirstComeFirstServed().order(reqs(), 0.0) == [0, 2, 1]
    assert ShortestJobFirst().order(reqs(), 0.0) == [2, 1, 0]  # tie on 20 tokens: earlier arrival
    assert EarliestDeadlineFirst().order(reqs(), 0.0) == [1, 0, 2]
    assert FirstComeFirstServed(preempt=True).victim(reqs(), 0.0) == 1  # the latest arrival


def loads():
    return [
        ReplicaLoad(0, 4, 400, expected_tokens_per_step=4.0, step_s=0.02),
        ReplicaLoad(1, 2, 300, expected_tokens_per_step=1.5, step_s=0.02),
        ReplicaLoad(2, 2, 300, expected_tokens_per_step=1.5, step_s=0.02),
    ]


def test_routers():
    req = Request(9, 10, 100)
    rr = RoundRobin()
    assert [rr.route(req, loads()) for _ in range(4)] == [0, 1, 2, 0]
    assert LeastOutstanding().route(req, loads()) == 1  # tie between 1 and 2: lower id
    # Replica 0 has more tokens queued but accepts 4 per step: (400+100)/4 < (300+100)/1.5.
    assert SpeculationAware().route(req, loads()) == 0
    picks = [PowerOfTwo(np.random.default_rng(3)).route(req, loads()) for _ in range(2)]
    assert picks[0] == picks[1]  # same seed, same choice


def test_power_of_two_takes_the_less_loaded_of_its_two_samples():
    # Outstanding tokens 400, 300, 300. Of the three equally likely pairs, {0, 1} and {1, 2}
    # go to replica 1 (the tie to the lower id), {0, 2} to replica 2: replica 0, the busiest,
    # is never chosen; 1 gets 2/3 of the requests and 2 gets 1/3. A router blind to load
    # would send 0 its share.
    router = PowerOfTwo(np.random.default_rng(7))
    req = Request(9, 10, 100)
    counts = np.bincount([router.route(req, loads()) for _ in range(3000)], minlength=3)
    assert counts[0] == 0
    assert counts[1] / 3000 == pytest.approx(2 / 3, abs=0.03)
    assert counts[2] / 3000 == pytest.approx(1 / 3, abs=0.03)
    # Two replicas: both are always sampled, so the less loaded one always wins.
    two = [ReplicaLoad(0, 1, 500), ReplicaLoad(1, 1, 20)]
    assert {router.route(req, two) for _ in range(50)} == {1}


def test_simulator_does_not_import_torch():
    code = "import sys, specgrove.sim, specgrove.sim.api, specgrove.commands.sim; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
