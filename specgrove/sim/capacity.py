"""Capacity: the highest request rate (``workload.rate``) a scenario serves within an SLO.

An SLO here is a set of bounds on a run summary's figures, named ``<metric>_<stat>``: the
metric one of the summary's latency distributions (``ttft``, ``tpot``, ``e2e``, ``queueing``:
the summary's ``ttft_s`` ... in seconds) and the stat one of ``mean``, ``p50``, ``p90``,
``p99``; ``ttft_p99=0.5`` asks the summary's ``ttft_s.p99 <= 0.5``. ``slo_attainment=0.9``
(a lower bound) asks that 90% of requests meet the scenario's own ``[slo]`` section. Without
an explicit SLO the scenario's ``[slo]`` is used at p99 (``ttft_p99 <= slo.ttft_s``,
``tpot_p99 <= slo.tpot_s`` and, when set, ``e2e_p99 <= slo.e2e_s``).

The search, per tree policy: bracket (double or halve from the scenario's rate, or from the
given ``low``/``high``), then bisect geometrically until ``high <= low * (1 + tolerance)``,
with at most ``max_runs`` simulated runs. Every run uses the scenario's seed, so the answer
is deterministic. A run meets the SLO when every bound holds and no request was rejected for
lack of KV capacity (a request the cluster turned away met no SLO).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from specgrove.sim.scenario import Scenario, ScenarioError, portable

METRICS = ("ttft", "tpot", "e2e", "queueing")  # the summary's "<metric>_s" distributions
STATS = ("mean", "p50", "p90", "p99")
ATTAINMENT = "slo_attainment"  # the summary's share of requests meeting the scenario's [slo]
DEFAULT_MAX_RUNS = 12
DEFAULT_TOLERANCE = 0.05


class SloSpecError(ScenarioError):
    """A bad ``--slo`` string; one line."""


@dataclass(frozen=True)
class Bound:
    name: str  # "ttft_p99", or "slo_attainment"
    limit: float

    @property
    def is_lower(self) -> bool:  # slo_attainment must reach the limit; latencies stay under it
        return self.name == ATTAINMENT

    def value(self, summary: dict) -> float | None:
        if self.is_lower:
            return summary[ATTAINMENT]
        metric, stat = self.name.rsplit("_", 1)
        return summary[f"{metric}_s"][stat]

    def holds(self, summary: dict) -> bool:
        v = self.value(summary)
        if v is None:
            return False
        return v >= self.limit if self.is_lower else v <= self.limit


def valid_names() -> list[str]:
    return [f"{m}_{s}" for m in METRICS for s in STATS] + [ATTAINMENT]


def parse_slo(text: str) -> list[Bound]:
    """``"ttft_p99=0.5,tpot_p99=0.05"`` -> bounds; ``SloSpecError`` (one line) when bad."""
    bounds: dict[str, Bound] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name or not value:
            raise SloSpecError(f"--slo {text!r}: expected METRIC=VALUE[,METRIC=VALUE...], e.g. ttft_p99=0.5,tpot_p99=0.05")
        if name not in valid_names():
            raise SloSpecError(f"--slo: unknown metric {name!r}; valid: {', '.join(valid_names())}")
        try:
            limit = float(value)
        except ValueError:
            raise SloSpecError(f"--slo: {name}={value!r} is not a number") from None
        if not math.isfinite(limit) or limit <= 0 or (name == ATTAINMENT and limit > 1):
            raise SloSpecError(f"--slo: {name} must be " + ("in (0, 1]" if name == ATTAINMENT else "a number > 0 (seconds)")
                               + f", got {value}")
        if name in bounds:
            raise SloSpecError(f"--slo: {name} is given twice")
        bounds[name] = Bound(name, limit)
    if not bounds:
        raise SloSpecError(f"--slo {text!r}: no bound given, e.g. ttft_p99=0.5,tpot_p99=0.05")
    return list(bounds.values())


def default_slo(scenario: Scenario) -> list[Bound]:
    """The scenario's ``[slo]`` section, at p99."""
    s = scenario.slo
    bounds = [Bound("ttft_p99", s.ttft_s), Bound("tpot_p99", s.tpot_s)]
    if s.e2e_s is not None:
        bounds.append(Bound("e2e_p99", s.e2e_s))
    return bounds


@dataclass
class Probe:
    rate: float
    meets: bool
    values: dict[str, float | None]
    num_finished: int
    num_rejected: int
    wall_s: float  # machine-dependent: shown while searching, not written (capacity.json is deterministic)


@dataclass
class PolicyCapacity:
    policy: str
    max_rate: float | None  # the highest rate that met the SLO; None: not even the lowest tried
    first_failing_rate: float | None  # the lowest rate that failed it; None: none tried failed
    converged: bool  # high <= low * (1 + tolerance) was reached within the run budget
    note: str
    probes: list[Probe] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        for p in data["probes"]:
            p.pop("wall_s")
        data["probes"] = sorted(data["probes"], key=lambda p: p["rate"])
        return data


def _evaluate(base: Scenario, rate: float, bounds: Sequence[Bound], max_requests: int | None) -> Probe:
    from specgrove.sim.api import check_size, run_scenario
    from specgrove.sim.build import resolve_variant

    scenario, built = resolve_variant(base, {"workload.rate": rate})
    check_size(scenario, built, max_requests, where=f"rate {rate:g}/s: ")
    result = run_scenario(scenario, built=built, max_requests=None)
    s = result.summary
    kv_rejected = s.get("rejected", {}).get("kv_capacity", 0)
    meets = s["num_finished"] > 0 and kv_rejected == 0 and all(b.holds(s) for b in bounds)
    return Probe(rate, meets, {b.name: b.value(s) for b in bounds}, s["num_finished"], s["num_rejected"],
                 result.run.get("wall_s", 0.0))


def search(base: Scenario, bounds: Sequence[Bound], low: float | None = None, high: float | None = None,
           tolerance: float = DEFAULT_TOLERANCE, max_runs: int = DEFAULT_MAX_RUNS, policy: str | None = None,
           max_requests: int | None = None, on_probe: Callable[[str, Probe], None] | None = None) -> PolicyCapacity:
    """The highest ``workload.rate`` of ``base`` whose run meets ``bounds``; see the module."""
    label = policy or base.policies.tree
    probes: dict[float, Probe] = {}

    def probe(rate: float) -> bool:
        if rate not in probes:
            probes[rate] = _evaluate(base, rate, bounds, max_requests)
            if on_probe is not None:
                on_probe(label, probes[rate])
        return probes[rate].meets

    def budget() -> bool:
        return len(probes) < max_runs

    def done(lo: float | None, hi: float | None, converged: bool, note: str) -> PolicyCapacity:
        return PolicyCapacity(label, lo, hi, converged, note, list(probes.values()))

    # Bracket: lo meets, hi fails.
    lo = hi = None
    if low is not None and high is not None:
        if not probe(low):
            return done(None, low, True, f"the SLO is not met even at --low {low:g} req/s")
        lo = low
        if not budget():
            return done(lo, None, False, "run budget spent")
        if probe(high):
            return done(high, None, True, f"the SLO is met at --high {high:g} req/s, the search's upper bound")
        hi = high
    else:
        start = low if low is not None else high if high is not None else base.workload.rate
        rate = start
        ok = probe(rate)
        if ok:
            lo = rate
            if high is not None:  # start == high: the top already meets
                return done(high, None, True, f"the SLO is met at --high {high:g} req/s, the search's upper bound")
            while budget():
                rate *= 2
                if not probe(rate):
                    hi = rate
                    break
                lo = rate
            if hi is None:
                return done(lo, None, False, f"still met at {lo:g} req/s when the run budget ran out; pass a higher --high")
        else:
            hi = rate
            if low is not None:  # start == low: even the bottom fails
                return done(None, low, True, f"the SLO is not met even at --low {low:g} req/s")
            while budget():
                rate /= 2
                if probe(rate):
                    lo = rate
                    break
                hi = rate
            if lo is None:
                return done(None, hi, False, f"not met even at {hi:g} req/s when the run budget ran out; pass a lower --low")
    # Bisect, geometrically: the tolerance is relative.
    while hi > lo * (1 + tolerance):
        if not budget():
            return done(lo, hi, False, f"run budget spent; the capacity lies in [{lo:.4g}, {hi:.4g}) req/s")
        mid = math.sqrt(lo * hi)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return done(lo, hi, True, f"within {tolerance:.0%}: met at {lo:.4g}, not at {hi:.4g} req/s")


def policy_scenarios(base: Scenario, policies: Sequence[str] | None) -> list[tuple[str, Scenario]]:
    """``base`` under each tree policy (its tree_options reset to the policy's defaults, unless
    the policy is the base's own); ``ScenarioError`` for an unknown one."""
    from specgrove import registry
    from specgrove.sim.build import resolve_variant

    if not policies:
        return [(base.policies.tree, base)]
    known = registry.names("tree")
    for p in policies:
        if p not in known:
            raise ScenarioError(f"unknown tree policy {p!r}; valid: {', '.join(known)}")
    return [(p, resolve_variant(base, {"policies.tree": p})[0]) for p in policies]


def _search_job(job: tuple) -> tuple[str, PolicyCapacity | None, str | None]:
    policy, scenario, bounds, kwargs = job
    try:
        return policy, search(scenario, bounds, policy=policy, **kwargs), None
    except ScenarioError as exc:
        return policy, None, str(exc)


def capacity(base: Scenario, bounds: Sequence[Bound], policies: Sequence[str] | None = None,
             processes: int | None = 1, **kwargs: Any) -> list[PolicyCapacity]:
    """``search`` for each policy (in ``processes`` parallel processes); ``ScenarioError``
    if a search could not run (the first's message)."""
    from specgrove.sim.sweep import run_parallel

    if base.workload.arrival == "trace":
        raise ScenarioError("workload.arrival: capacity varies workload.rate; a trace's arrivals do not follow it")
    jobs = [(p, s, list(bounds), kwargs) for p, s in policy_scenarios(base, policies)]

    def crashed(job, exc):
        return job[0], None, f"worker process died ({type(exc).__name__}: {exc})"

    out = []
    for policy, found, error in run_parallel(_search_job, jobs, processes, crashed):
        if error is not None:
            raise ScenarioError(f"policy {policy}: {error}")
        out.append(found)
    return out


def table(results: Sequence[PolicyCapacity], bounds: Sequence[Bound]) -> str:
    head = ["policy", "max rate (req/s)", "runs", *(b.name for b in bounds), "note"]
    rows = []
    for r in results:
        at = next((p for p in r.probes if p.rate == r.max_rate), None)
        vals = [("-" if at is None or at.values[b.name] is None else
                 (f"{at.values[b.name]:.3f}" if b.is_lower else f"{at.values[b.name] * 1e3:.1f}ms")) for b in bounds]
        rows.append([r.policy, "-" if r.max_rate is None else f"{r.max_rate:.4g}", str(len(r.probes)), *vals, r.note])
    widths = [max(len(row[i]) for row in [head] + rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head] + rows)


def plot(results: Sequence[PolicyCapacity], path: Path, slo_text: str):
    """Bars: the max rate per policy (0 where none met the SLO). Returns the figure's axes
    data: (labels, heights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.policy for r in results]
    heights = [r.max_rate or 0.0 for r in results]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels) + 2), 4))
    bars = ax.bar(labels, heights, color="tab:blue")
    for bar, r in zip(bars, results):
        ax.annotate("none" if r.max_rate is None else f"{r.max_rate:.3g}" + ("" if r.converged else "*"),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(bottom=0, top=max(heights + [1e-9]) * 1.15)
    ax.set(xlabel="tree policy", ylabel="max request rate meeting the SLO (req/s)", title=f"capacity at {slo_text}")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return labels, heights


def markdown(results: Sequence[PolicyCapacity], bounds: Sequence[Bound], tolerance: float) -> str:
    lines = ["# Capacity", "", "SLO: " + ", ".join(f"{b.name} {'>=' if b.is_lower else '<='} {b.limit:g}" for b in bounds)
             + f"; tolerance {tolerance:g}", "", "```", table(results, bounds), "```", ""]
    for r in results:
        lines += [f"## {r.policy}", "", "| rate (req/s) | meets | " + " | ".join(b.name for b in bounds) + " | finished | rejected |",
                  "|---|---|" + "---|" * len(bounds) + "---|---|"]
        for p in sorted(r.probes, key=lambda p: p.rate):
            vals = ["-" if p.values[b.name] is None else f"{p.values[b.name]:.4g}" for b in bounds]
            lines.append(f"| {p.rate:.4g} | {'yes' if p.meets else 'no'} | " + " | ".join(vals)
                         + f" | {p.num_finished} | {p.num_rejected} |")
        lines.append("")
    return "\n".join(lines)


FILES = ("capacity.json", "capacity.md", "capacity.png", "manifest.json")


def write_capacity(results: Sequence[PolicyCapacity], bounds: Sequence[Bound], base: Scenario, out: Path,
                   tolerance: float, slo_text: str, command: str | None = None) -> None:
    """DIR/capacity.json, capacity.md, capacity.png and (given ``command``) manifest.json,
    staged and renamed into place together (``results.staged``)."""
    from specgrove.results import manifest, staged

    data = {
        "slo": [{"metric": b.name, "bound": "min" if b.is_lower else "max", "limit": b.limit} for b in bounds],
        "tolerance": tolerance,
        "seed": base.seed,
        "policies": [r.to_dict() for r in results],
        "scenario": portable(base),
    }
    with staged(out) as stage:
        stage.write_json("capacity.json", data)
        stage.write_text("capacity.md", markdown(results, bounds, tolerance))
        plot(results, stage.file("capacity.png"), slo_text)
        if command is not None:
            stage.write_json("manifest.json", manifest(command, seed=base.seed, scenario=portable(base)))
