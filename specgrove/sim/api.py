"""The Python API the CLI and the dashboard share: ``run_scenario`` and ``sweep``."""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from specgrove.cost import CostModel
from specgrove.results import manifest, staged
from specgrove.sim.build import Built, build, resolve
from specgrove.sim.cluster import SimCluster
from specgrove.sim.metrics import request_rows, summarise, write_requests_csv
from specgrove.sim.records import Series
from specgrove.sim.scenario import Scenario, ScenarioError, portable, read_scenario_file
from specgrove.sim.workload import arrivals_after, expected_arrivals
from specgrove.trace import TraceWriter

PROGRESS_CHUNKS = 200  # the bar advances by chunks of simulated time, not per event
MAX_REQUESTS = 2_000_000  # a run expected to simulate more is refused unless the caller raises this


class TooLargeError(ScenarioError):
    """A run expected to simulate more requests than allowed; the message gives the estimate."""


def estimate_requests(scenario: Scenario, built: Built) -> float:
    """About how many requests a run simulates: arrivals stop at ``duration_s`` (or the
    horizon, if earlier); a trace holds what it holds."""
    window = min(scenario.duration_s, scenario.horizon_s or math.inf)
    return expected_arrivals(scenario.workload, window, built.trace)


def check_size(scenario: Scenario, built: Built, max_requests: int | None = MAX_REQUESTS, where: str = "") -> float:
    """Refuse (``TooLargeError``, one line with the estimate) a run expected to simulate more
    than ``max_requests`` requests; ``None``: no limit. Returns the estimate."""
    estimate = estimate_requests(scenario, built)
    if max_requests is not None and estimate > max_requests:
        w = scenario.workload
        how = (f"{estimate:,.0f} trace rows up to duration_s" if w.arrival == "trace"
               else f"workload.rate {w.rate:g}/s over {min(scenario.duration_s, scenario.horizon_s or math.inf):g} s")
        raise TooLargeError(f"{where}this run would simulate about {estimate:.3g} requests ({how}), over the "
                            f"limit of {max_requests:,}: lower the rate or duration_s, or pass --max-requests N")
    return estimate


def trace_rows_dropped(scenario: Scenario, built: Built) -> int:
    """Trace rows after ``duration_s``: a run does not replay them (``arrivals_after_horizon``)."""
    return arrivals_after(built.trace, scenario.duration_s) if scenario.workload.arrival == "trace" else 0


@dataclass
class Result:
    """``summary`` depends only on the scenario and seed (byte-identical when written);
    ``run`` holds what the machine adds: wall time and simulated seconds per wall second."""

    scenario: Scenario
    summary: dict
    requests: list[dict] = field(repr=False)
    run: dict = field(default_factory=dict)
    # replica id -> its ``records.Series`` (batch size, KV use, queue length at each step)
    series: dict = field(default_factory=dict, repr=False)

    FILES = ("summary.json", "requests.csv", "scenario.json", "run.json")
    PLOTS = ("cdf.png", "timeseries.png")  # with ``write(..., plots=True)``

    def write(self, out_dir: str | Path, command: str | None = None, plots: bool = False) -> Path:
        """DIR/summary.json, DIR/requests.csv, DIR/scenario.json (the resolved scenario, which
        ``specgrove sim`` reads back: its paths are absolute), DIR/run.json (wall-clock
        figures) and, given the ``command`` that made the run, DIR/manifest.json. With
        ``plots``, Vidur-style figures too: DIR/cdf.png (CDFs of TTFT, TPOT and E2E) and
        DIR/timeseries.png (batch size, KV use and queue length per replica over time). The
        files are written to temporaries and renamed into place together (``results.staged``)."""
        out = Path(out_dir)
        scenario = portable(self.scenario)
        with staged(out) as stage:
            if plots:  # first: the likeliest to fail, before anything else is staged
                from specgrove.sim.plots import plot_cdfs, plot_timeseries

                plot_cdfs(stage.file("cdf.png"), self.requests, self.scenario.name)
                plot_timeseries(stage.file("timeseries.png"), self.series, self.scenario.name)
            stage.write_json("summary.json", self.summary)
            stage.write_json("run.json", self.run)
            write_requests_csv(self.requests, stage.file("requests.csv"))
            stage.write_json("scenario.json", scenario)
            if command is not None:
                stage.write_json("manifest.json", manifest(command, seed=self.scenario.seed, scenario=scenario))
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
    window = min(horizon, scenario.duration_s)
    chunk = max(min(horizon, scenario.duration_s * 2) / PROGRESS_CHUNKS, 1e-6)  # 1 us: a 5e-324 s window still moves
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(window), unit="sim-s", desc=scenario.name, leave=False)
    # SimPy leaves run(until=...)'s own stop event queued, so ``env.peek()`` never reports an
    # empty schedule between chunks; ask the model whether anything can still happen instead.
    while env.now < horizon and not cluster.is_drained:
        # Chunks grow with the clock (1% of it): a drain that lasts far longer than a tiny
        # arrival window takes a few hundred chunks, not billions.
        until = min(env.now + max(chunk, env.now / 100), horizon)
        env.run(until=until)
        if bar is not None:  # update() honours tqdm's mininterval; no redraw per chunk
            bar.set_postfix(done=cluster.ledger.num_finished, refresh=False)
            bar.update(round(min(env.now, window)) - bar.n)
    if bar is not None:
        bar.close()


def run_scenario(scenario: Scenario | str | Path | dict, seed: int | None = None, progress: bool = False,
                 cost_model: CostModel | None = None, built: Built | None = None,
                 trace_path: str | Path | None = None, max_requests: int | None = MAX_REQUESTS) -> Result:
    """Simulate one scenario; ``seed`` overrides the scenario's own. ``cost_model`` replaces
    the roofline (e.g. one calibrated on executor traces; any ``specgrove.cost.CostModel``).
    ``built``: the scenario's already-built objects (``build.resolve``), to skip building.
    ``trace_path``: write the run's step trace there, in the executor's format.
    ``max_requests``: refuse (``TooLargeError``) a run expected to simulate more; None: no limit."""
    start = time.perf_counter()
    if built is None:
        scenario, built = resolve_any(scenario)
    if seed is not None:
        if int(seed) < 0:
            raise ScenarioError(f"seed: must be >= 0, got {seed}")
        scenario = scenario.model_copy(update={"seed": int(seed)})
    check_size(scenario, built, max_requests)
    if cost_model is not None:
        built = replace(built, cost=cost_model)
    with TraceWriter(trace_path, keep=False, method=scenario.policies.tree, max_batch=scenario.deployment.max_batch) as trace:
        cluster = SimCluster(scenario, built, scenario.seed, trace.record if trace_path else None)
        series = {}
        for replica in cluster.replicas:
            replica.series = series[replica.id] = Series(replica.setup.kv_capacity_tokens)
        _drive(cluster, scenario, progress)
    records = sorted(cluster.ledger.records.values(), key=lambda r: r.request_id)
    finishes = [r.finish_s for r in records if not math.isnan(r.finish_s)]
    end_s = max(finishes) if finishes else cluster.env.now
    elapsed = end_s if end_s > 0 else 1.0
    summary = summarise(records, scenario.slo, scenario.duration_s, end_s, cluster.utilisation(elapsed),
                        clamped=cluster.clamped, arrivals_after_horizon=trace_rows_dropped(scenario, built),
                        itl=_itl(series.values()))
    wall = time.perf_counter() - start
    run = {"wall_s": wall, "sim_per_wall": end_s / wall if wall > 0 else None}
    return Result(scenario, summary, request_rows(records), run, series)


def _itl(series) -> tuple[list[float], list[int]]:
    """Every replica's per-step gaps and their weights (``records.Series``): the run's ITL."""
    gaps, weights = [], []
    for s in series:
        gaps += s.gaps_s
        weights += s.gap_weights
    return gaps, weights


@dataclass
class Variant:
    """One sweep variant: what it overrides, the scenario it resolved to, and its result or
    why it failed (``error``: one line; ``detail``: a traceback, when it raised)."""

    index: int
    overrides: dict[str, Any]
    scenario: Scenario | None = None
    built: Built | None = field(default=None, repr=False)
    result: Result | None = None
    error: str | None = None
    detail: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.overrides.items()) or "base"

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None


class SweepError(ScenarioError):
    """Some variants of a sweep failed (``sweep``); the message names the first."""


def prepare_sweep(scenario: Scenario | str | Path | dict, vary: dict[str, list], seed: int | None = None,
                  max_requests: int | None = MAX_REQUESTS) -> list[Variant]:
    """Every combination of ``vary``, validated and built once each, before any process
    starts. A field name that does not exist, a negative seed and a variant too large to run
    (``check_size``) refuse the whole sweep (``ScenarioError``); a variant whose values do not
    validate or build is kept, with its ``error``, and the others run."""
    from specgrove.sim.build import resolve_variant
    from specgrove.sim.scenario import check_fields
    from specgrove.sim.sweep import combinations

    if seed is not None and int(seed) < 0:
        raise ScenarioError(f"seed: must be >= 0, got {seed}")
    base = scenario if isinstance(scenario, Scenario) else resolve_any(scenario)[0]
    check_fields(base, vary)
    variants = []
    for i, overrides in enumerate(combinations(vary)):
        v = Variant(i, overrides)
        try:
            v.scenario, v.built = resolve_variant(base, overrides)
        except ScenarioError as exc:
            v.error = str(exc)
        else:
            if seed is not None:
                v.scenario = v.scenario.model_copy(update={"seed": int(seed)})
            check_size(v.scenario, v.built, max_requests, where=f"variant {v.label}: ")
        variants.append(v)
    return variants


def _run_variant(job: tuple[int, Scenario, Built]) -> tuple[int, Result | None, str | None, str | None]:
    """One variant, in a worker: its result, or its error as one line plus the traceback.
    Nothing it raises escapes to kill the pool."""
    index, scenario, built = job
    try:
        return index, run_scenario(scenario, built=built, max_requests=None), None, None
    except ScenarioError as exc:
        return index, None, str(exc), None
    except Exception as exc:  # noqa: BLE001 - reported per variant, the sweep goes on
        first = (str(exc).splitlines() or [""])[0]
        return index, None, f"{type(exc).__name__}: {first}" if first else type(exc).__name__, traceback.format_exc()


def run_sweep(variants: list[Variant], processes: int | None = None, progress: str | None = None) -> list[Variant]:
    """Run the variants that built, in parallel processes; fills each one's ``result`` or
    ``error`` (a worker process that dies fails only its own variants). ``progress``: a label
    for a bar on stderr (shown when stderr is a terminal)."""
    from specgrove.sim.sweep import run_parallel

    jobs = [(v.index, v.scenario, v.built) for v in variants if v.error is None]
    by_index = {v.index: v for v in variants}

    def crashed(job, exc: BaseException):
        return job[0], None, f"worker process died ({type(exc).__name__}: {exc})", None

    for index, result, error, detail in run_parallel(_run_variant, jobs, processes, crashed, progress=progress):
        v = by_index[index]
        v.result, v.error, v.detail = result, error, detail
    return variants


def sweep(scenario: Scenario | str | Path | dict, vary: dict[str, list], seed: int | None = None,
          processes: int | None = None, progress: bool = False,
          max_requests: int | None = MAX_REQUESTS) -> list[tuple[dict[str, Any], Result]]:
    """Run every combination of ``vary`` (dotted field -> values), in parallel processes.
    Each variant is validated and built once, here, before any process starts. Raises
    ``SweepError`` if any variant failed (``prepare_sweep`` and ``run_sweep`` keep the
    others' results)."""
    variants = run_sweep(prepare_sweep(scenario, vary, seed, max_requests), processes)
    failed = [v for v in variants if not v.ok]
    if failed:
        raise SweepError(f"{len(failed)} of {len(variants)} variants failed; variant {failed[0].label}: {failed[0].error}")
    return [(v.overrides, v.result) for v in variants]
