"""The Python API the CLI and the dashboard share: ``run_scenario`` and ``sweep``."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from specgrove.cost import CostModel
from specgrove.sim.build import Built, build, resolve
from specgrove.sim.cluster import SimCluster
from specgrove.sim.metrics import request_rows, summarise, write_requests_csv, write_summary
from specgrove.sim.scenario import Scenario, read_scenario_file
from specgrove.trace import TraceWriter

PROGRESS_CHUNKS = 200  # the bar advances by chunks of simulated time, not per event


@dataclass
class Result:
    """``summary`` depends only on the scenario and seed (byte-identical when written);
    ``run`` holds what the machine adds: wall time and simulated seconds per wall second."""

    scenario: Scenario
    summary: dict
    requests: list[dict] = field(repr=False)
    run: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        """DIR/summary.json, DIR/requests.csv, DIR/scenario.json (the resolved scenario) and
        DIR/run.json (wall-clock figures)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_summary(self.summary, out / "summary.json")
        (out / "run.json").write_text(json.dumps(self.run, indent=2) + "\n")
        write_requests_csv(self.requests, out / "requests.csv")
        (out / "scenario.json").write_text(json.dumps(self.scenario.model_dump(), indent=2) + "\n")
        return out


def resolve_any(scenario: Scenario | str | Path | dict) -> tuple[Scenario, Built]:
    """A scenario object, its data, or a TOML path: validated and built, once."""
    if isinstance(scenario, Scenario):
        return scenario, build(scenario)
    if isinstance(scenario, dict):
        return resolve(scenario)
    return resolve(read_scenario_file(scenario), Path(scenario).parent)


def _drive(cluster: SimCluster, scenario: Scenario, progress: bool) -> None:
    """Run to the horizon, or until no event is left (every request done)."""
    env = cluster.env
    horizon = scenario.horizon_s if scenario.horizon_s is not None else math.inf
    chunk = (min(horizon, scenario.duration_s * 2)) / PROGRESS_CHUNKS
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(scenario.duration_s), unit="sim-s", desc=scenario.name, leave=False)
    # SimPy leaves run(until=...)'s own stop event queued, so ``env.peek()`` never reports an
    # empty schedule between chunks; ask the model whether anything can still happen instead.
    while env.now < horizon and not cluster.is_drained:
        until = min(env.now + chunk, horizon)
        env.run(until=until)
        if bar is not None:  # update() honours tqdm's mininterval; no redraw per chunk
            bar.set_postfix(done=cluster.ledger.num_finished, refresh=False)
            bar.update(round(min(env.now, scenario.duration_s)) - bar.n)
    if bar is not None:
        bar.close()


def run_scenario(scenario: Scenario | str | Path | dict, seed: int | None = None, progress: bool = False,
                 cost_model: CostModel | None = None, built: Built | None = None,
                 trace_path: str | Path | None = None) -> Result:
    """Simulate one scenario; ``seed`` overrides the scenario's own. ``cost_model`` replaces
    the roofline (e.g. one calibrated on executor traces; any ``specgrove.cost.CostModel``).
    ``built``: the scenario's already-built objects (``build.resolve``), to skip building.
    ``trace_path``: write the run's step trace there, in the executor's format."""
    start = time.perf_counter()
    if built is None:
        scenario, built = resolve_any(scenario)
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": int(seed)})
    if cost_model is not None:
        built = replace(built, cost=cost_model)
    with TraceWriter(trace_path, keep=False, method=scenario.policies.tree, max_batch=scenario.deployment.max_batch) as trace:
        cluster = SimCluster(scenario, built, scenario.seed, trace.record if trace_path else None)
        _drive(cluster, scenario, progress)
    records = sorted(cluster.ledger.records.values(), key=lambda r: r.request_id)
    finishes = [r.finish_s for r in records if not math.isnan(r.finish_s)]
    end_s = max(finishes) if finishes else cluster.env.now
    elapsed = end_s if end_s > 0 else 1.0
    summary = summarise(records, scenario.slo, scenario.duration_s, end_s, cluster.utilisation(elapsed))
    wall = time.perf_counter() - start
    run = {"wall_s": wall, "sim_per_wall": end_s / wall if wall > 0 else None}
    return Result(scenario, summary, request_rows(records), run)


def _run_variant(args: tuple[dict[str, Any], Scenario, Built, int | None]) -> tuple[dict[str, Any], Result]:
    overrides, scenario, built, seed = args
    return overrides, run_scenario(scenario, seed=seed, built=built)


def sweep(scenario: Scenario | str | Path | dict, vary: dict[str, list], seed: int | None = None,
          processes: int | None = None, progress: bool = False) -> list[tuple[dict[str, Any], Result]]:
    """Run every combination of ``vary`` (dotted field -> values), in parallel processes.
    Each variant is validated and built once, here, before any process starts."""
    from specgrove.sim.sweep import combinations, run_parallel

    base, _ = resolve_any(scenario)
    variants = combinations(base, vary)
    return run_parallel(_run_variant, [(*v, seed) for v in variants], processes, progress)
