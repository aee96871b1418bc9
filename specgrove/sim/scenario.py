"""Scenarios: TOML (or JSON) files validated at load, with errors that name the bad field.

A scenario covers cluster, models, deployment, workload, acceptance, policies, SLO, duration
and seed. Pydantic checks each field; ``build`` then does what needs several fields at once
(a TP degree that divides a node, enough GPUs, weights that fit, policy options that
construct). Every failure is a ``ScenarioError`` whose one-line message starts with the dotted
field name, e.g. ``workload.rate: must be > 0``.

This module is the schema and the field-by-field pass; ``build`` adds the cross-field pass
and resolves presets into the objects a run needs (``build.parse_scenario`` runs both).
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from specgrove import registry
from specgrove.sim.hardware import GPUS, LINKS
from specgrove.sim.models import MODELS, PAIRS


class ScenarioError(ValueError):
    """A bad scenario; the message is one line naming the field."""


def _preset(table: dict, what: str):
    def check(value: str) -> str:
        if value not in table:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(sorted(table))}")
        return value

    return check


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError("must be > 0")
    return value


class Strict(BaseModel):
    # NaN and infinities are refused in every numeric field: an infinite rate or duration would
    # run forever, a NaN compares false everywhere and slips past every bound.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Upper bounds on sizes and shapes: beyond them a run would not finish in any useful time, or
# its arithmetic would overflow (an infinite step time, an int too large for numpy). They are
# generous: each is far past what a real deployment or workload uses.
MAX_NODES = 4096
MAX_GPUS_PER_NODE = 64
MAX_TOKENS = 10_000_000  # any one length: far beyond every preset's context
MAX_SIGMA = 5.0  # lognormal lengths: exp(5 z) already spans 10 orders of magnitude
MIN_CV, MAX_CV = 1e-3, 20.0  # gamma arrivals: shape 1/cv^2 from 10^6 down to 1/400
MAX_DURATION_S = 1e8  # about three years; beyond, float seconds lose the millisecond
MAX_TREE_BUDGET = 4096  # nodes per request per step
MAX_BATCH_NODE_BUDGET = 1_000_000
MAX_NUM_SAMPLES = 100_000  # tabulated: exact samples per (domain, budget)


class ClusterSpec(Strict):
    gpu: str = "H100-SXM"
    num_nodes: int = Field(1, ge=1, le=MAX_NODES)
    gpus_per_node: int = Field(8, ge=1, le=MAX_GPUS_PER_NODE)
    intra_link: str = "nvlink"
    inter_link: str = "infiniband"

    _gpu = field_validator("gpu")(_preset(GPUS, "gpu preset"))
    _links = field_validator("intra_link", "inter_link")(_preset(LINKS, "link preset"))


class ModelsSpec(Strict):
    pair: str | None = None
    target: str | None = None
    draft: str | None = None

    _pair = field_validator("pair")(lambda v: v if v is None else _preset(PAIRS, "model pair")(v))
    _models = field_validator("target", "draft")(lambda v: v if v is None else _preset(MODELS, "model preset")(v))

    @model_validator(mode="after")
    def _resolve(self) -> ModelsSpec:
        if self.pair is not None:
            self.target = self.target or PAIRS[self.pair].target
            self.draft = self.draft or PAIRS[self.pair].draft
        if self.target is None or self.draft is None:
            raise ValueError("give a pair, or both target and draft")
        return self


class DeploymentSpec(Strict):
    num_replicas: int = Field(1, ge=1)
    tp: int = Field(1, ge=1)
    draft_placement: Literal["same", "separate"] = "same"
    draft_gpus: int = Field(1, ge=1)  # only with a separate draft
    # With a separate draft: micro-batches in ping-pong. 1: draft, transfer, verify in turn;
    # 2: one drafts while the other verifies. Ignored when the draft shares the target's GPUs.
    microbatches: int = Field(2, ge=1, le=2)
    max_batch: int = Field(64, ge=1)
    # Where a newly admitted request's prompt is computed. "mixed": inside the step's target
    # forward with everyone's verification (Sarathi-style chunk-free mixing); its first token
    # comes at the step's end. "separate": in forwards of their own before the step (target,
    # then draft), as specgrove's executor does; the first token comes out at once and the
    # request joins the step that follows.
    prefill: Literal["mixed", "separate"] = "mixed"
    kv_memory_fraction: float = Field(0.9, gt=0, le=1)
    # Utilisations below 0.1% would make a step last longer than any run (or overflow to inf).
    mfu: float = Field(0.6, ge=1e-3, le=1)
    mbu: float = Field(0.8, ge=1e-3, le=1)
    forward_overhead_s: float | None = Field(None, ge=0, le=60)  # None: the GPU preset's


class LengthSpec(Strict):
    """A length distribution in tokens. A drawn length above ``max`` is clamped to ``max``
    (and counted: the summary's ``clamped``); a request longer than the models' context is
    rejected at arrival (``rejected.context_length``)."""

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: int = Field(128, ge=1, le=MAX_TOKENS)
    low: int = Field(1, ge=1, le=MAX_TOKENS)
    high: int = Field(256, ge=1, le=MAX_TOKENS)
    median: float = Field(128.0, gt=0, le=MAX_TOKENS)
    sigma: float = Field(1.0, ge=0, le=MAX_SIGMA)
    max: int = Field(32768, ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _range(self) -> LengthSpec:
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class WorkloadSpec(Strict):
    arrival: Literal["poisson", "gamma", "onoff", "trace"] = "poisson"
    rate: float = 1.0  # requests/s (onoff: while on)
    cv: float = Field(1.0, ge=MIN_CV, le=MAX_CV)  # gamma: coefficient of variation of the gaps
    on_s: float = 1.0
    off_s: float = Field(1.0, ge=0)
    trace: str | None = None
    domains: dict[str, float] = {}  # domain -> weight of the arrival mix
    prompt: LengthSpec = LengthSpec()
    output: LengthSpec = LengthSpec()

    _pos = field_validator("rate", "on_s")(_positive)

    @field_validator("domains")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, w in value.items():
            if not w > 0:
                raise ValueError(f"weight of {name!r} must be > 0")
        return value


class SyntheticDraftSpec(Strict):
    confidence_mean: float | None = Field(None, gt=0, le=1)
    confidence_concentration: float | None = Field(None, ge=0)
    tail_ratio: float | None = Field(None, ge=0, lt=1)
    scale: float | None = Field(None, gt=0, le=1)
    gamma: float | None = Field(None, gt=0)


class SyntheticLookupSpec(Strict):
    # Per match order n (1, 2, ...): the chance a step's longest context match has order n, and
    # the chances a chain from such a match has its token at depth j accepted (given the ones
    # above it were). See ``lookup.SyntheticLookup``.
    orders: list[float] | None = None
    accept: list[list[float]] | None = None
    # Optional: the order shares by the request's context length (cached tokens): one row per
    # bin that ``context_edges`` cut, replacing ``orders`` for the requests in it.
    context_edges: list[int] | None = None
    orders_by_context: list[list[float]] | None = None
    # Optional, per order: the chances that a match offers 1, 2, ... tokens to copy.
    lengths: list[list[float]] | None = None
    # Optional: the order shares by the request's own output already cached (tokens), one row
    # per bin that ``generated_edges`` cut; where set, they are drawn instead of by context.
    generated_edges: list[int] | None = None
    orders_by_generated: list[list[float]] | None = None


class AcceptanceSpec(Strict):
    mode: Literal["exact", "tabulated"] = "exact"
    num_samples: int = Field(1024, ge=16, le=MAX_NUM_SAMPLES)  # tabulated: exact samples per (domain, budget)
    draft: SyntheticDraftSpec = SyntheticDraftSpec()  # the synthetic draft's behaviour
    domains: dict[str, SyntheticDraftSpec] = {}
    lookup: SyntheticLookupSpec = SyntheticLookupSpec()  # prompt lookup's behaviour


class PoliciesSpec(Strict):
    tree: str = "dynamic"
    tree_options: dict[str, Any] = {}
    tree_budget: int = Field(16, ge=0, le=MAX_TREE_BUDGET)  # nodes per request per step
    batch_budget: str = "uniform"
    batch_node_budget: int = Field(0, ge=0, le=MAX_BATCH_NODE_BUDGET)  # nodes per step over the batch; 0: no cap
    scheduler: str = "fcfs"
    scheduler_options: dict[str, Any] = {}
    router: str = "round-robin"

    @field_validator("tree", "batch_budget", "scheduler", "router")
    @classmethod
    def _registered(cls, value: str, info) -> str:
        kind = {"batch_budget": "batch-budget"}.get(info.field_name, info.field_name)
        registry.get(kind, value)  # raises "unknown <kind> policy 'x'; valid: ..."
        return value


class CalibrationSpec(Strict):
    # A profile from ``specgrove calibrate`` (path relative to the scenario file): its fitted
    # cost model replaces the roofline, its draft fit the pair's synthetic draft, and its
    # measured rows the tabulated samples of the method it traced.
    profile: str | None = None
    # Every time the profile fitted (forwards, host work, front end), multiplied by this: the
    # host's speed now relative to when the profile's traces were taken (> 1: slower now), as
    # for a what-if on a slower or faster machine of the same kind.
    time_scale: float = Field(1.0, gt=0)


class SloSpec(Strict):
    ttft_s: float = Field(1.0, gt=0)
    tpot_s: float = Field(0.1, gt=0)
    e2e_s: float | None = Field(None, gt=0)


class Scenario(Strict):
    name: str = "scenario"
    seed: int = Field(0, ge=0)  # numpy seeds are non-negative
    duration_s: float = Field(60.0, le=MAX_DURATION_S)  # arrivals stop here
    horizon_s: float | None = Field(None, gt=0, le=MAX_DURATION_S)  # the run stops here; None: when every request is done
    cluster: ClusterSpec = ClusterSpec()
    models: ModelsSpec = ModelsSpec(pair="demo")
    deployment: DeploymentSpec = DeploymentSpec()
    workload: WorkloadSpec = WorkloadSpec()
    acceptance: AcceptanceSpec = AcceptanceSpec()
    policies: PoliciesSpec = PoliciesSpec()
    slo: SloSpec = SloSpec()
    calibration: CalibrationSpec = CalibrationSpec()

    _dur = field_validator("duration_s")(_positive)


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{loc}: {msg}" if loc else msg


def validate_fields(data: dict, base_dir: Path | None = None) -> Scenario:
    """Field-by-field validation (pydantic); a relative trace path is taken from ``base_dir``.
    The cross-field checks need resolved objects and live in ``build``."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_one_line(exc)) from None
    if base_dir is not None:
        if scenario.workload.trace and not Path(scenario.workload.trace).is_absolute():
            scenario.workload.trace = str(base_dir / scenario.workload.trace)
        if scenario.calibration.profile and not Path(scenario.calibration.profile).is_absolute():
            scenario.calibration.profile = str(base_dir / scenario.calibration.profile)
    return scenario


def read_scenario_file(path: str | Path) -> dict:
    """A scenario file's data: TOML, or JSON when the name ends in ``.json`` (the
    ``scenario.json`` a run writes beside its results). The text must be UTF-8."""
    path = Path(path)
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: scenario is not UTF-8 text (at byte offset {exc.start})") from None
    try:
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ScenarioError(f"{path}: not valid {kind}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a {kind} table of fields, got {type(data).__name__}")
    return data


OPEN_TABLES = ("tree_options", "scheduler_options", "domains")  # free-form keys allowed

# Fields resolved from another field. Switching that field to a new value without giving
# these too resets them, so they resolve anew: a new pair brings its own target and draft, a
# new policy starts from its own default options. Naming the same value as the base keeps them.
DEPENDENTS: dict[str, dict[str, Any]] = {
    "models.pair": {"models.target": None, "models.draft": None},
    "policies.tree": {"policies.tree_options": {}},
    "policies.scheduler": {"policies.scheduler_options": {}},
}


def _parent(data: dict, dotted: str) -> tuple[dict, str]:
    """The table that holds ``dotted``'s leaf, and the leaf's name; ``ScenarioError`` when
    there is no such field."""
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ScenarioError(f"{dotted}: no such field")
        node = node[part]
    if leaf not in node and not (parents and parents[-1] in OPEN_TABLES):
        raise ScenarioError(f"{dotted}: no such field")
    return node, leaf


def check_fields(scenario: Scenario, fields) -> None:
    """Every dotted name in ``fields`` names a field of the scenario (or a key of an open table)."""
    data = scenario.model_dump()
    for dotted in fields:
        _parent(data, dotted)


def lookup(data: dict, dotted: str) -> Any:
    node, leaf = _parent(data, dotted)
    return node.get(leaf)


def overridden(scenario: Scenario, overrides: dict[str, Any]) -> dict:
    """The scenario's data with dotted fields replaced (``{"workload.rate": 4}``); fields
    resolved from a replaced one are reset (``DEPENDENTS``)."""
    data = scenario.model_dump()
    for field, dependents in DEPENDENTS.items():
        if field in overrides and overrides[field] != lookup(data, field):
            for dependent, reset in dependents.items():
                if dependent not in overrides:
                    node, leaf = _parent(data, dependent)
                    node[leaf] = copy.deepcopy(reset)
    for dotted, value in overrides.items():
        node, leaf = _parent(data, dotted)
        node[leaf] = value
    return data


def portable(scenario: Scenario) -> dict:
    """The scenario's data with its file paths (trace, calibration profile) made absolute,
    so the data still resolves when written somewhere else (``scenario.json`` in a results
    directory) and read back by ``specgrove sim``."""
    data = scenario.model_dump()
    for section, key in (("workload", "trace"), ("calibration", "profile")):
        if data[section][key]:
            data[section][key] = str(Path(data[section][key]).resolve())
    return data
