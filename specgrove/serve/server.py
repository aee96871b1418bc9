"""Assemble a server: the pair, the engine with its policies, the runner (or the replica pool)
and the app."""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from specgrove.executor.engine import EngineConfig
from specgrove.executor.loading import ModelPair
from specgrove.executor.methods import DEMO_MEASUREMENT_MODULE, method_options
from specgrove.executor.parallel.placement import PairSource, Placement
from specgrove.executor.parallel.replica import open_replica
from specgrove.serve.app import ServedModel, create_app
from specgrove.serve.metrics import ServeMetrics
from specgrove.serve.runner import EngineRunner


@dataclass(frozen=True)
class ServeConfig:
    method: str = "dynamic-cost"
    budget: int = 16
    batch_budget: str = "uniform"
    max_batch: int = 16
    scheduler: str = "fcfs"
    max_queue: int = 256
    seed: int = 0
    kernels: str = "auto"  # the CuPy kernels or their torch references (``--kernels``)
    gemm: str = "auto"  # oneDNN's packed products on CPU where they pay, or F.linear (``--gemm``)
    cuda_graphs: str = "auto"  # dense forwards replay CUDA graphs on CUDA (``--cuda-graphs``)


def model_id(pair: ModelPair) -> str:
    return "demo" if pair.name == "demo" else pair.target_path.name


def make_engine(pair: ModelPair, config: ServeConfig, placement: Placement | None = None, on_trace=None,
                source: PairSource | None = None):
    """One replica on ``placement`` (its tp and draft placement; the caller runs the
    replicas): ``.engine``, and ``.close()`` for the ranks it started. ``pair`` is loaded here;
    ``source`` says how the replica's other ranks load it."""
    engine_config = EngineConfig(method=config.method, budget=config.budget, batch_budget=config.batch_budget,
                                 max_batch=config.max_batch, seed=config.seed, scheduler=config.scheduler,
                                 eos_token_id=pair.tokenizer.eos_token_id, kernels=config.kernels,
                                 gemm=config.gemm, cuda_graphs=config.cuda_graphs)
    # The pair is measured (rank acceptance, confidence map) on a held-out stdlib module.
    text = (Path(sysconfig.get_paths()["stdlib"]) / DEMO_MEASUREMENT_MODULE).read_text(encoding="utf-8")
    return open_replica(pair, source or PairSource(), placement or Placement(), engine_config,
                        method_options(config.method, pair, text), on_trace=on_trace,
                        threads=(source.threads if source else None) or 1)


def build_server(pair: ModelPair, config: ServeConfig, on_trace=None, placement=None,
                 source: PairSource | None = None) -> tuple[FastAPI, EngineRunner]:
    """One engine in this process (the engine loop is ``runner.run``)."""
    name = model_id(pair)
    metrics = ServeMetrics(name)

    def record(rec) -> None:
        metrics.observe(rec)
        if on_trace is not None:
            on_trace(rec)

    replica = make_engine(pair, config, placement, on_trace=record, source=source)
    engine = replica.engine
    runner = EngineRunner(engine, metrics, config.max_queue)
    runner.on_stop = replica.close
    served = ServedModel(name, pair.tokenizer, engine.max_positions)
    return create_app(runner, served), runner


def build_replicated_server(source, tokenizer, name: str, config: ServeConfig, placement, router: str,
                            on_trace=None, start_timeout_s: float | None = None):
    """``placement.num_replicas`` engines, each in a child process that loads the pair named by
    ``source`` (a ``specgrove.executor.parallel.placement.PairSource``), behind the ``router`` policy.
    Returns once every replica has loaded (``ReplicaStartError`` if one could not)."""
    from specgrove.serve.replicas import ReplicaPool

    metrics = ServeMetrics(name, replicas=placement.num_replicas)
    pool = ReplicaPool(source, config, placement, router, metrics, on_trace=on_trace)
    pool.launch(start_timeout_s)
    served = ServedModel(name, tokenizer, pool.max_positions)
    return create_app(pool, served), pool
