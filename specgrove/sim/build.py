"""From a scenario's data to the objects a run needs, in one validation pass.

``resolve`` validates the fields (``scenario``), then resolves presets into objects and checks
what needs several fields at once, which is easiest on resolved objects: a TP degree must
divide a node (all-reduce stays on NVLink), the replicas must fit the cluster, the weights
must leave room for KV, and policy options must construct. A run takes the ``Built`` it
returns, so nothing is built twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from specgrove import registry
from specgrove.cost import CostModel
from specgrove.sim.acceptance import SyntheticDraft
from specgrove.sim.lookup import SyntheticLookup
from specgrove.sim.costmodel import RooflineCostModel
from specgrove.sim.hardware import GPUS, LINKS, Placement, Topology
from specgrove.sim.models import MODELS, PAIRS, context_tokens
from specgrove.sim.scenario import Scenario, ScenarioError, lookup, overridden, read_scenario_file, validate_fields
from specgrove.sim.workload import Arrival, ArrivalTraceError, load_trace


@dataclass
class Built:
    placements: list[Placement]
    cost: CostModel  # the roofline, or a profile's fitted model
    kv_capacity_tokens: int  # per replica
    domains: list[str]
    drafts: list[SyntheticDraft]  # per domain, in ``domains`` order
    trace: list[Arrival] | None
    measured_rows: dict[int, np.ndarray] | None = None  # domain index -> a profile's rows (tabulated)
    context_tokens: int = 1 << 62  # the longest request (prompt + output) the pair serves
    frontend_s: float = 0.0  # a profile's client-side latency on top of the server's (TTFT, E2E)
    lookup: SyntheticLookup = field(default_factory=SyntheticLookup)  # prompt lookup's behaviour
    # domain index -> (edges, a profile's rows per bin of the request's own output cached) (tabulated)
    measured_by_generated: dict[int, tuple[np.ndarray, list[np.ndarray]]] | None = None


def _synthetic_drafts(s: Scenario, domains: list[str], profile=None) -> list[SyntheticDraft]:
    base = dict(PAIRS[s.models.pair].draft_behaviour) if s.models.pair else {}
    if profile is not None:
        base.update(profile.draft)
    base.update(s.acceptance.draft.model_dump(exclude_none=True))
    out = []
    for d in domains:
        params = dict(base)
        if d in s.acceptance.domains:
            params.update(s.acceptance.domains[d].model_dump(exclude_none=True))
        out.append(SyntheticDraft(**params))
    return out


def _synthetic_lookup(s: Scenario, profile=None) -> SyntheticLookup:
    """The pair's prompt-lookup behaviour, then a profile's fit, then the scenario's own."""
    params = dict(PAIRS[s.models.pair].lookup_behaviour) if s.models.pair else {}
    if profile is not None:
        params.update(profile.lookup)
    own = s.acceptance.lookup.model_dump(exclude_none=True)
    if "orders" in own:  # the scenario's orders, for every context and output it does not bin
        for binned, edges in (("orders_by_context", "context_edges"), ("orders_by_generated", "generated_edges")):
            if binned not in own:
                params.pop(binned, None)
                params.pop(edges, None)
    params.update(own)
    try:
        return SyntheticLookup(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) for k, v in params.items()})
    except ValueError as exc:
        raise ScenarioError(f"acceptance.lookup: {exc}") from None


def _check_draft(c: SyntheticDraft, where: str) -> None:
    if c.confidence_concentration > 0 and not 0 < c.confidence_mean < 1:
        raise ScenarioError(f"{where}.confidence_mean: must be < 1 unless confidence_concentration = 0")


def build(s: Scenario) -> Built:
    cl, dep = s.cluster, s.deployment
    if cl.gpus_per_node % dep.tp:
        raise ScenarioError(f"deployment.tp: {dep.tp} does not divide gpus_per_node {cl.gpus_per_node}")
    topo = Topology(GPUS[cl.gpu], cl.num_nodes, cl.gpus_per_node, LINKS[cl.intra_link], LINKS[cl.inter_link])
    draft_gpus = dep.draft_gpus if dep.draft_placement == "separate" else 0
    needed = dep.num_replicas * (dep.tp + draft_gpus)
    if needed > topo.num_gpus:
        raise ScenarioError(
            f"deployment.num_replicas: {dep.num_replicas} replicas need {needed} GPUs; the cluster has {topo.num_gpus}"
        )
    gpu = topo.gpu
    if dep.forward_overhead_s is not None:
        gpu = replace(gpu, forward_overhead_s=dep.forward_overhead_s)
        topo = replace(topo, gpu=gpu)
    target, draft = MODELS[s.models.target], MODELS[s.models.draft]
    placements = topo.place(dep.num_replicas, dep.tp, draft_gpus)
    cost = RooflineCostModel(
        gpu, target, draft, tp=dep.tp, draft_tp=draft_gpus or dep.tp, tp_link=topo.intra_link,
        draft_link=placements[0].draft_link, mfu=dep.mfu, mbu=dep.mbu,
    )
    memory = dep.tp * gpu.mem_bytes * dep.kv_memory_fraction - target.weight_bytes
    per_token = target.kv_bytes_per_token
    if not draft_gpus:  # the draft and its cache share the target's GPUs
        memory -= draft.weight_bytes
        per_token += draft.kv_bytes_per_token
    elif draft.weight_bytes > draft_gpus * gpu.mem_bytes * dep.kv_memory_fraction:
        raise ScenarioError(f"deployment.draft_gpus: draft {draft.name} does not fit on {draft_gpus} x {gpu.name}")
    capacity = int(memory // per_token)
    if capacity < 1:
        raise ScenarioError(
            f"deployment.tp: {target.name} does not fit on {dep.tp} x {gpu.name} with room for KV cache"
        )

    trace = None
    if s.workload.arrival == "trace":
        if not s.workload.trace:
            raise ScenarioError("workload.trace: arrival = 'trace' needs a trace file")
        try:
            trace = load_trace(s.workload.trace)
        except ArrivalTraceError as exc:
            raise ScenarioError(f"workload.trace: {exc}") from None
    domain_set = set(s.workload.domains) | set(s.acceptance.domains)
    if trace:
        domain_set |= {a.domain for a in trace}
    domains = sorted(domain_set) or ["default"]
    profile = _profile(s)
    drafts = _synthetic_drafts(s, domains, profile)
    for d, c in zip(domains, drafts):
        _check_draft(c, f"acceptance.domains.{d}" if d in s.acceptance.domains else "acceptance.draft")
    measured = binned = None
    if profile is not None:
        cost = profile.cost_for(s.policies.tree).scaled(s.calibration.time_scale)
        by_domain = profile.acceptance_rows.get(s.policies.tree, {})
        measured = {i: np.asarray(by_domain[d], dtype=np.int64) for i, d in enumerate(domains)
                    if by_domain.get(d)} or None
        bins = profile.acceptance_rows_by_generated.get(s.policies.tree, {})
        binned = {i: (np.asarray(bins[d]["edges"], dtype=np.int64),
                      [np.asarray(r, dtype=np.int64) for r in bins[d]["rows"]])
                  for i, d in enumerate(domains) if d in bins and measured and i in measured} or None
    built = Built(placements, cost, capacity, domains, drafts, trace, measured, context_tokens(target, draft),
                  profile.frontend_s * s.calibration.time_scale if profile is not None else 0.0,
                  _synthetic_lookup(s, profile), binned)
    make_tree_policy(s, built)
    make_scheduler(s)
    return built


def _profile(s: Scenario):
    if not s.calibration.profile:
        return None
    from specgrove.calibration.profile import ProfileError, load_profile

    try:
        return load_profile(s.calibration.profile)
    except ProfileError as exc:
        raise ScenarioError(f"calibration.profile: {exc}") from None


def make_tree_policy(s: Scenario, built: Built):
    options = dict(s.policies.tree_options)
    if s.policies.tree == "dynamic-cost":
        options.setdefault("cost_model", built.cost)
    if s.policies.tree in ("dynamic-cost", "dynamic-lookup"):
        # What the executor's policy learns in its first steps (every step scores the
        # matches against the emitted tokens), known here from the start.
        options.setdefault("lookup_accept", [list(a) for a in built.lookup.accept])
    try:
        return registry.create("tree", s.policies.tree, **options)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"policies.tree_options: {exc}") from None


def make_scheduler(s: Scenario):
    try:
        return registry.create("scheduler", s.policies.scheduler, **s.policies.scheduler_options)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"policies.scheduler_options: {exc}") from None


def make_router(s: Scenario, rng: np.random.Generator):
    return registry.create("router", s.policies.router, rng=rng)


def resolve(data: dict, base_dir: Path | None = None) -> tuple[Scenario, Built]:
    """Validate a scenario's data, fields then cross-field, and build what a run needs."""
    scenario = validate_fields(data, base_dir)
    return scenario, build(scenario)


def parse_scenario(data: dict, base_dir: Path | None = None) -> Scenario:
    """A fully validated scenario (``ScenarioError`` names the first bad field)."""
    return resolve(data, base_dir)[0]


def load_scenario(path: str | Path) -> Scenario:
    return parse_scenario(read_scenario_file(path), Path(path).parent)


def resolve_variant(scenario: Scenario, overrides: dict[str, Any]) -> tuple[Scenario, Built]:
    """A variant with dotted fields replaced (``{"workload.rate": 4}``), validated and built.
    Each replaced field must read back as given from the resolved variant: a variant is the
    scenario it claims to be, or an error."""
    variant, built = resolve(overridden(scenario, overrides))
    data = variant.model_dump()
    for dotted, value in overrides.items():
        got = lookup(data, dotted)
        if not _reads_back(got, value):
            raise ScenarioError(f"{dotted}: resolved to {got!r}, not the {value!r} asked for")
    return variant, built


def _reads_back(got: Any, value: Any) -> bool:
    """``got`` (resolved) is ``value`` (asked for); a table asked for need only match its keys
    (the rest are defaults)."""
    if isinstance(value, dict):
        return isinstance(got, dict) and all(k in got and _reads_back(got[k], v) for k, v in value.items())
    return got == value


def with_overrides(scenario: Scenario, overrides: dict[str, Any]) -> Scenario:
    return resolve_variant(scenario, overrides)[0]
