"""The executor over several processes (gloo on this CPU): tensor-parallel target and draft,
a separate draft overlapped by two micro-batches, both together. Every placement must give the
single-process engine's greedy tokens at batch 1, 4 and 16, and its sampled tokens under a
fixed seed; a rank that dies must fail its replica promptly; the wire must stay small."""

import os
import signal
import time

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import load_pair
from specgrove.executor.methods import METHOD_OPTIONS
from specgrove.executor.parallel.launch import PairSource
from specgrove.executor.parallel.placement import Placement
from specgrove.executor.parallel.replica import open_replica
from specgrove.executor.sampling import SamplingParams

PROMPTS = ["def main():\n", "import os\n", "class Point:\n    def", "for i in range(", "x = [",
           "return self.", "if __name__", "with open(", "try:\n    ", "print(", "async def ", "from typing",
           "while True:\n", "@property\n", "raise ValueError(", "lambda x:"]
PLACEMENTS = {
    "tp2": Placement(tp=2),
    "separate": Placement(draft_placement="separate"),
    "tp2+separate": Placement(tp=2, draft_placement="separate"),
}


@pytest.fixture(scope="module")
def pair():
    return load_pair()


def _config(batch, temperature=0.0):
    return EngineConfig(method="dynamic", budget=8, max_batch=batch, eos_token_id=None,
                        sampling=SamplingParams(temperature), seed=3)


def _run(engine, prompts, n):
    ids = [engine.add_request(p, n) for p in prompts]
    out = engine.run()
    return [out[i] for i in ids]


def _on_replica(pair, placement, config, options, prompts, n):
    """The tokens of one run on a replica of ``placement``, whose ranks are stopped after."""
    replica = open_replica(pair, PairSource(), placement, config, options)
    try:
        return _run(replica.engine, prompts, n)
    finally:
        replica.close()


def _single(pair, prompts, config, n):
    return _run(build_engine(pair.target, pair.draft, config, dict(METHOD_OPTIONS["dynamic"])), prompts, n)


@pytest.mark.parametrize("name", list(PLACEMENTS))
@pytest.mark.parametrize("batch", [1, 4, 16])
def test_greedy_equals_the_single_process(pair, name, batch):
    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS[: max(batch, 4)]]
    config = _config(batch)
    want = _single(pair, prompts, config, 12)
    replica = open_replica(pair, PairSource(), PLACEMENTS[name], config, dict(METHOD_OPTIONS["dynamic"]))
    try:
        got = _run(replica.engine, prompts, 12)
        traffic = replica.traffic
    finally:
        replica.close()
    assert got == want
    if traffic is not None:  # greedy on the wire: token ids and parents, no vocabulary rows
        assert traffic["steps"] > 0
        allowance = 16 * traffic["nodes"] + 64 * traffic["request_steps"]
        step_bytes = traffic["bytes_out"] + traffic["bytes_in"] - traffic["bytes_admit"]
        assert step_bytes <= allowance, traffic


def test_dynamic_cost_measures_its_cost_model_and_stays_lossless_on_a_placement(pair):
    """dynamic-cost measures its cost model on rank 0 before the ranks start (a path the
    dynamic runs above never take); its greedy tokens are ar's, on one process or several."""
    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS[:4]]
    config = EngineConfig(method="dynamic-cost", budget=8, max_batch=4, eos_token_id=None, seed=3)
    want = _run(build_engine(pair.target, pair.draft, EngineConfig(method="ar", max_batch=4, eos_token_id=None)),
                prompts, 12)
    assert _on_replica(pair, PLACEMENTS["separate"], config, dict(METHOD_OPTIONS["dynamic-cost"]), prompts, 12) == want


def test_sampling_with_a_seed_equals_the_single_process(pair):
    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS[:6]]
    config = _config(4, temperature=0.9)
    want = _single(pair, prompts, config, 16)
    assert _on_replica(pair, PLACEMENTS["tp2+separate"], config, dict(METHOD_OPTIONS["dynamic"]), prompts, 16) == want
    # And the seed matters: another one samples something else.
    assert _single(pair, prompts, _config(4, temperature=0.9).__class__(**{**_config(4, 0.9).__dict__, "seed": 4}),
                   16) != want


def test_the_pingpong_overlaps_and_hands_the_micro_batches_out_in_turn(pair):
    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS[:8]]
    replica = open_replica(pair, PairSource(), PLACEMENTS["separate"], _config(4), dict(METHOD_OPTIONS["dynamic"]))
    try:
        engine = replica.engine
        for p in prompts:
            engine.add_request(p, 12)
        engine.admit()
        assert [len(lane.active) for lane in engine.lanes] == [2, 2]  # each lane half the batch
        engine.run()
        traffic = replica.traffic
    finally:
        replica.close()
    assert 0.0 < traffic["overlap_fraction"] <= 1.0


@pytest.mark.parametrize("victim", ["draft", "tp"])
def test_a_dead_rank_fails_the_replica_promptly(pair, victim):
    placement = Placement(tp=2, draft_placement="separate")
    replica = open_replica(pair, PairSource(), placement, _config(4), dict(METHOD_OPTIONS["dynamic"]),
                           step_timeout_s=20.0)
    try:
        engine = replica.engine
        for p in PROMPTS[:4]:
            engine.add_request(pair.tokenizer(p)["input_ids"], 200)
        engine.step()
        proc = replica.procs[1 if victim == "draft" else 0]  # ranks 1 (tp peer) and 2 (draft)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        started = time.monotonic()
        with pytest.raises(Exception) as failure:
            for _ in range(500):
                engine.step()
        assert time.monotonic() - started < 30, "a dead rank must not hang the replica"
        assert not isinstance(failure.value, AssertionError)
    finally:
        replica.close(timeout_s=5)
    assert all(not p.is_alive() for p in replica.procs)
    torch.set_num_threads(1)
