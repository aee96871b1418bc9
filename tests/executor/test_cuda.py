"""CUDA only (skipped without a GPU; ``scripts/gpu_check.sh`` runs them on one): the engine's
greedy tokens on cuda equal target-only greedy decoding, with the torch references and with the
CuPy kernels (where CuPy imports), and every placement that fits one GPU
(ranks sharing it, all-reduces staged through the host) equals the single-process engine."""

import pytest

torch = pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from specgrove.executor.engine import EngineConfig, build_engine  # noqa: E402
from specgrove.executor.loading import load_pair  # noqa: E402
from specgrove.executor.methods import METHOD_OPTIONS  # noqa: E402
from specgrove.executor.parallel.placement import PairSource, Placement  # noqa: E402
from specgrove.executor.parallel.replica import open_replica  # noqa: E402
from specgrove.kernels import _cupy  # noqa: E402

PROMPTS = ["def main():\n", "import os\n", "class Point:\n    def", "for i in range(", "x = [", "return self."]


@pytest.fixture(scope="module")
def pair():
    return load_pair(device="cuda")


def _run(engine, prompts, n=24):
    ids = [engine.add_request(p, n) for p in prompts]
    out = engine.run()
    return [out[i] for i in ids]


def _reference(pair, prompts, n=24):
    """Target-only greedy decoding with transformers on the same device."""
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p], device="cuda")
            gen = pair.target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=n, min_new_tokens=n, pad_token_id=pair.tokenizer.eos_token_id)
            out.append(gen[0, len(p):].tolist())
    return out


KERNELS = ["torch"] + ([] if _cupy.unavailable("cuda") else ["cupy"])


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("method", ["chain", "dynamic", "sequoia"])
def test_greedy_on_cuda_equals_target_greedy(pair, method, kernels):
    from specgrove.executor.methods import method_options

    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS]
    config = EngineConfig(method=method, budget=16, max_batch=4, eos_token_id=None, kernels=kernels)
    engine = build_engine(pair.target, pair.draft, config, method_options(method, pair, "x"))
    assert _run(engine, prompts) == _reference(pair, prompts)


@pytest.mark.parametrize("placement", [Placement(tp=2), Placement(draft_placement="separate"),
                                       Placement(tp=2, draft_placement="separate")], ids=str)
def test_placements_on_one_gpu_equal_one_process(pair, placement):
    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS]
    config = EngineConfig(method="dynamic", budget=8, max_batch=4, eos_token_id=None)
    want = _run(build_engine(pair.target, pair.draft, config, dict(METHOD_OPTIONS["dynamic"])), prompts)
    replica = open_replica(pair, PairSource(device="cuda"), placement, config, dict(METHOD_OPTIONS["dynamic"]))
    try:
        assert _run(replica.engine, prompts) == want
    finally:
        replica.close()


@pytest.mark.parametrize("method", ["ar", "chain", "dynamic-cost"])
def test_cuda_graphs_replay_and_keep_greedy_exact(pair, method):
    """Real captures (``runtime.graphs``): every bucket captured at build, plain steps and draft
    rounds replayed, and the tokens still target-only greedy's."""
    from specgrove.executor.methods import method_options

    prompts = [pair.tokenizer(p)["input_ids"] for p in PROMPTS]
    config = EngineConfig(method=method, budget=16, max_batch=4, eos_token_id=None, cuda_graphs="on")
    engine = build_engine(pair.target, pair.draft, config, method_options(method, pair, "x"))
    assert engine.graph_stats()["captured"] > 0
    assert _run(engine, prompts) == _reference(pair, prompts)
    assert engine.graph_stats()["replays"] > 0
