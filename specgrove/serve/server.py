"""Assemble a server: the pair, the engine with its policies, the runner and the app."""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import ModelPair
from specgrove.executor.methods import DEMO_MEASUREMENT_MODULE, method_options
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


def model_id(pair: ModelPair) -> str:
    return "demo" if pair.name == "demo" else pair.target_path.name


def build_server(pair: ModelPair, config: ServeConfig, on_trace=None) -> tuple[FastAPI, EngineRunner]:
    name = model_id(pair)
    metrics = ServeMetrics(name)

    def record(rec) -> None:
        metrics.observe(rec)
        if on_trace is not None:
            on_trace(rec)

    engine_config = EngineConfig(method=config.method, budget=config.budget, batch_budget=config.batch_budget,
                                 max_batch=config.max_batch, seed=config.seed, scheduler=config.scheduler,
                                 eos_token_id=pair.tokenizer.eos_token_id)
    # The pair is measured (rank acceptance, confidence map) on a held-out stdlib module.
    text = (Path(sysconfig.get_paths()["stdlib"]) / DEMO_MEASUREMENT_MODULE).read_text(encoding="utf-8")
    engine = build_engine(pair.target, pair.draft, engine_config, method_options(config.method, pair, text),
                          on_trace=record)
    runner = EngineRunner(engine, metrics, config.max_queue)
    served = ServedModel(name, pair.tokenizer, engine.max_positions)
    return create_app(runner, served), runner
