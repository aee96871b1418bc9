"""A commented scenario TOML (``specgrove sim --template``), derived from the schema.

Every field of ``scenario.Scenario`` is walked from the pydantic models, so a field added to
the schema shows up here without an edit; its default comes from the model, its bounds from
the field's constraints, its choices from a ``Literal`` or the preset / policy tables. Only
the one-line descriptions are written out here (``DESCRIPTIONS``); a field without one gets
its type instead, and ``missing_descriptions`` (which a test keeps empty) names it.

Fields whose default is unset (``None``) are written commented out; everything else is a
live line, so the template parses and validates as it is (``specgrove sim`` runs it).
"""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel

from specgrove.sim.scenario import Scenario

# "<model class>.<field>": one line. Keyed by class so a model used twice (LengthSpec for the
# prompt and the output) is described once.
DESCRIPTIONS: dict[str, str] = {
    "Scenario.name": "a label for the run (tables, progress bar)",
    "Scenario.seed": "seeds arrivals, lengths and acceptance: same seed, same results",
    "Scenario.duration_s": "seconds of arrivals; the run then drains what is in flight",
    "Scenario.horizon_s": "stop the run here even if requests are still in flight (unset: when all are done)",
    "Scenario.cluster": "the machines: one GPU kind, nodes x GPUs per node, and the links",
    "Scenario.models": "the draft/target pair (`specgrove presets` lists them)",
    "Scenario.deployment": "how replicas are laid out on the cluster and how fast they run",
    "Scenario.workload": "arrivals and request lengths",
    "Scenario.acceptance": "how the synthetic draft's tokens are accepted",
    "Scenario.policies": "tree, batch-budget, scheduler and router policies (`specgrove policies` lists them)",
    "Scenario.slo": "per-request targets; goodput and slo_attainment count requests meeting all of them",
    "Scenario.calibration": "replace the roofline with a profile fitted by `specgrove calibrate`",
    "ClusterSpec.gpu": "GPU preset of every GPU",
    "ClusterSpec.num_nodes": "nodes in the cluster",
    "ClusterSpec.gpus_per_node": "GPUs per node",
    "ClusterSpec.intra_link": "link between GPUs of one node (tensor parallelism, a separate draft)",
    "ClusterSpec.inter_link": "link between nodes",
    "ModelsSpec.pair": "a draft/target pair preset; sets target and draft unless they are given",
    "ModelsSpec.target": "target model preset (default: the pair's)",
    "ModelsSpec.draft": "draft model preset (default: the pair's)",
    "DeploymentSpec.num_replicas": "independent replicas the router spreads requests over",
    "DeploymentSpec.tp": "tensor-parallel GPUs per replica's target (node-aligned)",
    "DeploymentSpec.draft_placement": "the draft on the target's GPUs, or on GPUs of its own",
    "DeploymentSpec.draft_gpus": "GPUs of a separate draft, per replica (separate only)",
    "DeploymentSpec.microbatches": "separate draft: 1 = draft, transfer, verify in turn; 2 = ping-pong halves",
    "DeploymentSpec.max_batch": "most requests in a replica's running batch",
    "DeploymentSpec.prefill": "new prompts inside the step's verify forward (mixed), or in forwards of their own first (separate, the executor's way)",
    "DeploymentSpec.kv_memory_fraction": "share of GPU memory left after weights that holds the KV cache",
    "DeploymentSpec.mfu": "achieved fraction of peak FLOP/s",
    "DeploymentSpec.mbu": "achieved fraction of peak memory bandwidth",
    "DeploymentSpec.forward_overhead_s": "fixed seconds per forward (unset: the GPU preset's)",
    "WorkloadSpec.arrival": "arrival process; trace replays a JSONL file",
    "WorkloadSpec.rate": "mean arrivals per second (onoff: while on)",
    "WorkloadSpec.cv": "gamma: coefficient of variation of the gaps between arrivals",
    "WorkloadSpec.on_s": "onoff: seconds on",
    "WorkloadSpec.off_s": "onoff: seconds off",
    "WorkloadSpec.trace": "trace: JSONL of arrivals, relative to this file",
    "WorkloadSpec.domains": "domain -> weight of the arrival mix, e.g. {chat = 3, code = 1} (empty: one domain)",
    "WorkloadSpec.prompt": "prompt length distribution, tokens",
    "WorkloadSpec.output": "output length distribution, tokens",
    "LengthSpec.dist": "length distribution",
    "LengthSpec.value": "fixed: the length",
    "LengthSpec.low": "uniform: lowest length",
    "LengthSpec.high": "uniform: highest length",
    "LengthSpec.median": "lognormal: median length",
    "LengthSpec.sigma": "lognormal: sigma of the log",
    "LengthSpec.max": "longer draws are clamped here (and counted in the summary's clamped)",
    "AcceptanceSpec.mode": "exact: run the tree policy per step; tabulated: sample precomputed runs (faster)",
    "AcceptanceSpec.num_samples": "tabulated: exact samples per (domain, budget)",
    "AcceptanceSpec.draft": "the synthetic draft's behaviour (unset: the pair preset's)",
    "AcceptanceSpec.domains": "per-domain draft behaviour, e.g. [acceptance.domains.code] confidence_mean = 0.8",
    "SyntheticDraftSpec.confidence_mean": "mean top-1 draft probability",
    "SyntheticDraftSpec.confidence_concentration": "Beta concentration of the confidence; 0 = always the mean",
    "SyntheticDraftSpec.tail_ratio": "rank r+1 gets tail_ratio times rank r's share of the rest",
    "SyntheticDraftSpec.scale": "P(accept) = scale * p ** gamma",
    "SyntheticDraftSpec.gamma": "P(accept) = scale * p ** gamma",
    "AcceptanceSpec.lookup": "prompt lookup's behaviour (unset: the pair preset's, or a profile's fit)",
    "SyntheticLookupSpec.orders": "per n-gram order n = 1, 2, ...: chance a step's longest context match has order n",
    "SyntheticLookupSpec.accept": "per order: chance the chain's token at each depth is accepted, the ones above it were",
    "SyntheticLookupSpec.context_edges": "cached-token counts cutting request contexts into bins for orders_by_context",
    "SyntheticLookupSpec.orders_by_context": "per context bin (one more than the edges): the orders' chances there",
    "SyntheticLookupSpec.generated_edges": "own-output token counts cutting requests into bins for orders_by_generated",
    "SyntheticLookupSpec.orders_by_generated": "per bin of own output cached: the orders' chances there (preferred to by context)",
    "SyntheticLookupSpec.lengths": "per order: chances that a match offers 1, 2, ... tokens (unset: the policy's full length)",
    "PoliciesSpec.tree": "tree policy: the shape of each request's draft tree",
    "PoliciesSpec.tree_options": "options of the tree policy (empty: its defaults)",
    "PoliciesSpec.tree_budget": "tree nodes per request per step",
    "PoliciesSpec.batch_budget": "how a step's node budget is split over the batch",
    "PoliciesSpec.batch_node_budget": "tree nodes per step over the whole batch; 0 = no cap",
    "PoliciesSpec.scheduler": "admission and preemption policy",
    "PoliciesSpec.scheduler_options": "options of the scheduler (empty: its defaults)",
    "PoliciesSpec.router": "which replica gets each request",
    "SloSpec.ttft_s": "time to first token, seconds",
    "SloSpec.tpot_s": "time per output token after the first, seconds",
    "SloSpec.e2e_s": "end-to-end latency, seconds (unset: no target)",
    "CalibrationSpec.profile": "a profile JSON from `specgrove calibrate`, relative to this file",
    "CalibrationSpec.time_scale": "multiplies every fitted time: the host's speed now relative to the profile's traces",
}

# Fields whose value names an entry of a table: the comment lists the names.
_POLICY_KINDS = {"tree": "tree", "batch_budget": "batch-budget", "scheduler": "scheduler", "router": "router"}


def _choices(cls: type, name: str, annotation: Any) -> list[str] | None:
    from specgrove import registry
    from specgrove.sim.hardware import GPUS, LINKS
    from specgrove.sim.models import MODELS, PAIRS

    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    table = {("ClusterSpec", "gpu"): GPUS, ("ClusterSpec", "intra_link"): LINKS, ("ClusterSpec", "inter_link"): LINKS,
             ("ModelsSpec", "pair"): PAIRS, ("ModelsSpec", "target"): MODELS, ("ModelsSpec", "draft"): MODELS}.get((cls.__name__, name))
    if table is not None:
        return list(table)
    if cls.__name__ == "PoliciesSpec" and name in _POLICY_KINDS:
        return registry.names(_POLICY_KINDS[name])
    return None


def _bounds(info) -> str:
    marks = []
    for m in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(m, attr, None) is not None:
                marks.append(f"{sign} {getattr(m, attr):g}")
    return ", ".join(marks)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _comment(cls: type, name: str, info) -> str:
    text = DESCRIPTIONS.get(f"{cls.__name__}.{name}")
    if text is None:
        text = f"({getattr(info.annotation, '__name__', str(info.annotation))})"
    extras = []
    choices = _choices(cls, name, info.annotation)
    if choices:
        extras.append("one of: " + ", ".join(choices))
    if bounds := _bounds(info):
        extras.append(bounds)
    return text + (f" [{'; '.join(extras)}]" if extras else "")


def _section(cls: type[BaseModel], values: dict, path: list[str], out: list[str]) -> None:
    """``cls``'s scalar fields as ``key = value  # comment`` lines, then each sub-model as
    its own ``[path.field]`` table (TOML wants a table's keys before its sub-tables)."""
    subs = []
    for name, info in cls.model_fields.items():
        sub = _submodel(info.annotation)
        if sub is not None:
            subs.append((name, sub, info))
            continue
        value = values.get(name)
        comment = _comment(cls, name, info)
        if value is None:
            out.append(f"# {name} = ...  # {comment}")
        else:
            out.append(f"{name} = {_toml_value(value)}  # {comment}")
    for name, sub, info in subs:
        dotted = ".".join(path + [name])
        out.append("")
        out.append(f"# {_comment(cls, name, info)}")
        out.append(f"[{dotted}]")
        _section(sub, values.get(name) or {}, path + [name], out)


def template() -> str:
    """The scenario TOML with every field at its default and a comment each."""
    defaults = Scenario().model_dump()
    # The pair resolves target and draft; written out, they would pin the pair's models and
    # a user who changes only the pair would get a mixed pair. Leave them commented.
    defaults["models"]["target"] = defaults["models"]["draft"] = None
    out = [
        "# A specgrove scenario: every field, at its default. Fields marked '# name = ...' are unset",
        "# (their comment says what unset means). Reference: docs/simulator.md.",
        "# Run it: specgrove sim scenario.toml --out results/",
        "",
    ]
    _section(Scenario, defaults, [], out)
    return "\n".join(out) + "\n"


def schema_fields(cls: type[BaseModel] = Scenario, prefix: str = "") -> list[str]:
    """Every dotted field of the schema (sub-models recursed into, not listed themselves)."""
    names = []
    for name, info in cls.model_fields.items():
        sub = _submodel(info.annotation)
        names += schema_fields(sub, f"{prefix}{name}.") if sub is not None else [prefix + name]
    return names


def missing_descriptions(cls: type[BaseModel] = Scenario) -> list[str]:
    """``<class>.<field>`` of every schema field without a line in ``DESCRIPTIONS``."""
    missing = []
    for name, info in cls.model_fields.items():
        if f"{cls.__name__}.{name}" not in DESCRIPTIONS:
            missing.append(f"{cls.__name__}.{name}")
        if (sub := _submodel(info.annotation)) is not None:
            missing += [m for m in missing_descriptions(sub) if m not in missing]
    return missing
