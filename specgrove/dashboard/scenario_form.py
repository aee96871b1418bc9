"""The what-if form: a widget per scenario field, validated by the simulator's own schema.

The scenario's data lives in ``st.session_state[DATA]`` (every field, resolved); each widget
(key ``wi:<dotted field>``) edits one field of it. Every rerun first copies the widgets'
values into the data, then validates the whole scenario with ``sim.build.resolve``; the first
bad field's message (``workload.rate: must be > 0``) is shown under that field's widget, or
above the form when no widget edits that field.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from specgrove import registry
from specgrove.dashboard.data import toml_value
from specgrove.sim.build import resolve
from specgrove.sim.hardware import GPUS, LINKS
from specgrove.sim.models import PAIRS
from specgrove.sim.scenario import DEPENDENTS, ScenarioError, lookup, validate_fields

DATA = "wi_data"
PREFIX = "wi:"

# A scenario that runs in about a second: one 7B replica on an H100, 20 s of Poisson arrivals.
DEFAULT = {
    "name": "what-if", "seed": 0, "duration_s": 20.0,
    "cluster": {"gpu": "H100-SXM", "num_nodes": 1, "gpus_per_node": 8},
    "models": {"pair": "llama-2-7b/68m"},
    "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 64},
    "workload": {"arrival": "poisson", "rate": 4.0,
                 "prompt": {"dist": "lognormal", "median": 384.0, "sigma": 0.8, "max": 1024},
                 "output": {"dist": "lognormal", "median": 128.0, "sigma": 0.6, "max": 512}},
    "acceptance": {"mode": "tabulated", "num_samples": 256},
    "policies": {"tree": "dynamic", "tree_budget": 16},
    "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
}


@dataclass(frozen=True)
class Field:
    path: str
    label: str
    kind: str  # int, float, text, select, optional_float, table
    options: Callable[[], list] | None = None
    when: Callable[[dict], bool] | None = None  # shown only when this holds for the data
    help: str | None = None


def _is(path: str, *values) -> Callable[[dict], bool]:
    return lambda data: lookup(data, path) in values


def _length(which: str) -> list[Field]:
    p = f"workload.{which}"
    return [
        Field(f"{p}.dist", f"{which.title()} length", "select", lambda: ["fixed", "uniform", "lognormal"]),
        Field(f"{p}.value", f"{which.title()} tokens", "int", when=_is(f"{p}.dist", "fixed")),
        Field(f"{p}.low", f"{which.title()} low", "int", when=_is(f"{p}.dist", "uniform")),
        Field(f"{p}.high", f"{which.title()} high", "int", when=_is(f"{p}.dist", "uniform")),
        Field(f"{p}.median", f"{which.title()} median", "float", when=_is(f"{p}.dist", "lognormal")),
        Field(f"{p}.sigma", f"{which.title()} sigma", "float", when=_is(f"{p}.dist", "lognormal")),
        Field(f"{p}.max", f"{which.title()} max", "int"),
    ]


def _arrivals(data: dict) -> list[str]:
    return ["poisson", "gamma", "onoff"] + (["trace"] if lookup(data, "workload.arrival") == "trace" else [])


SECTIONS: list[tuple[str, list[Field]]] = [
    ("Cluster", [
        Field("cluster.gpu", "GPU", "select", lambda: list(GPUS)),
        Field("cluster.num_nodes", "Nodes", "int"),
        Field("cluster.gpus_per_node", "GPUs per node", "int"),
        Field("cluster.intra_link", "Link within a node", "select", lambda: list(LINKS)),
        Field("cluster.inter_link", "Link between nodes", "select", lambda: list(LINKS)),
    ]),
    ("Models and deployment", [
        Field("models.pair", "Model pair (target / draft)", "select", lambda: list(PAIRS),
              when=lambda d: lookup(d, "models.pair") is not None),
        Field("deployment.num_replicas", "Replicas", "int"),
        Field("deployment.tp", "Tensor parallel (TP) per replica", "int"),
        Field("deployment.draft_placement", "Draft placement", "select", lambda: ["same", "separate"],
              help="same: the draft shares the target's GPUs; separate: it runs on GPUs of its own"),
        Field("deployment.draft_gpus", "Draft GPUs", "int", when=_is("deployment.draft_placement", "separate")),
        Field("deployment.microbatches", "Micro-batches", "int", when=_is("deployment.draft_placement", "separate"),
              help="2: the draft grows one half's trees while the target verifies the other's"),
        Field("deployment.max_batch", "Max batch", "int"),
        Field("deployment.prefill", "Prefill", "select", lambda: ["mixed", "separate"],
              help="mixed: new prompts share the step's verify forward; separate: forwards of their own "
                   "before the step, first token at once (specgrove's executor)"),
    ]),
    ("Workload", [
        Field("workload.arrival", "Arrivals", "select", None),
        Field("workload.rate", "Rate (requests/s)", "float", when=lambda d: lookup(d, "workload.arrival") != "trace"),
        Field("workload.cv", "Gap CV", "float", when=_is("workload.arrival", "gamma")),
        Field("workload.on_s", "On (s)", "float", when=_is("workload.arrival", "onoff")),
        Field("workload.off_s", "Off (s)", "float", when=_is("workload.arrival", "onoff")),
        Field("duration_s", "Arrivals for (s)", "float"),
        *_length("prompt"), *_length("output"),
    ]),
    ("Policies and acceptance", [
        Field("policies.tree", "Tree policy", "select", lambda: registry.names("tree")),
        Field("policies.tree_options", "Tree options (TOML inline table)", "table"),
        Field("policies.tree_budget", "Tree budget (nodes per request)", "int"),
        Field("policies.batch_budget", "Batch budget policy", "select", lambda: registry.names("batch-budget")),
        Field("policies.batch_node_budget", "Nodes per step over the batch (0: no cap)", "int"),
        Field("policies.scheduler", "Scheduler", "select", lambda: registry.names("scheduler")),
        Field("policies.router", "Router", "select", lambda: registry.names("router")),
        Field("acceptance.mode", "Acceptance model", "select", lambda: ["exact", "tabulated"]),
        Field("acceptance.num_samples", "Samples per table", "int", when=_is("acceptance.mode", "tabulated")),
    ]),
    ("SLO and run", [
        Field("slo.ttft_s", "TTFT SLO (s)", "float"),
        Field("slo.tpot_s", "TPOT SLO (s)", "float"),
        Field("slo.e2e_s", "E2E SLO (s, blank: none)", "optional_float"),
        Field("seed", "Seed", "int"),
        Field("horizon_s", "Stop at (s, blank: when all finish)", "optional_float"),
        Field("name", "Name", "text"),
    ]),
]
FIELDS = {f.path: f for _, fields in SECTIONS for f in fields}


def default_data() -> dict:
    return validate_fields(copy.deepcopy(DEFAULT)).model_dump()


def _set(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[leaf] = value


def to_widget(field: Field, value):
    if field.kind == "optional_float":
        return "" if value is None else f"{value:g}"
    if field.kind == "table":
        return toml_value(value) if value else ""
    return value


def from_widget(field: Field, raw):
    """The field's value from its widget; ``ValueError`` says why it is not one."""
    if field.kind == "optional_float":
        text = str(raw).strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{field.path}: not a number: {text!r}") from None
    if field.kind == "table":
        text = str(raw).strip()
        if not text:
            return {}
        try:
            return tomllib.loads(f"x = {text}")["x"]
        except (tomllib.TOMLDecodeError, KeyError) as exc:
            raise ValueError(f"{field.path}: not a TOML inline table like {{ topk = 4 }} ({exc})") from None
    return raw


def load(data: dict) -> None:
    """Make ``data`` the form's scenario: widgets take its values at the next render."""
    st.session_state[DATA] = data
    for key in [k for k in st.session_state if str(k).startswith(PREFIX)]:
        del st.session_state[key]


def sync() -> tuple[dict, dict[str, str], str | None]:
    """Copy the widgets' values into the scenario data, then validate it. Returns the data,
    the errors by field, and an error no widget edits (or None)."""
    if DATA not in st.session_state:
        st.session_state[DATA] = default_data()
    data = st.session_state[DATA]
    errors: dict[str, str] = {}
    for path, field in FIELDS.items():
        key = PREFIX + path
        if key not in st.session_state:
            continue
        try:
            value = from_widget(field, st.session_state[key])
        except ValueError as exc:
            errors[path] = str(exc)
            continue
        if path in DEPENDENTS and value != lookup(data, path):
            for dependent, reset in DEPENDENTS[path].items():
                _set(data, dependent, copy.deepcopy(reset))
                st.session_state.pop(PREFIX + dependent, None)
        _set(data, path, value)
    if errors:
        return data, errors, None
    try:
        resolve(copy.deepcopy(data))
    except ScenarioError as exc:
        return data, *_place(str(exc), data)
    return data, {}, None


def _place(message: str, data: dict) -> tuple[dict[str, str], str | None]:
    """Under which widget a message goes: its field's, else the first of its group's."""
    loc = message.split(":", 1)[0].strip()
    shown = [p for p, f in FIELDS.items() if f.when is None or f.when(data)]
    for path in shown:
        if path == loc:
            return {path: message}, None
    for path in shown:
        if path.startswith(loc + "."):
            return {path: message}, None
    return {}, message


def render(data: dict, errors: dict[str, str]) -> None:
    """Every section's widgets, three per row, each bad field's message right under it."""
    for title, fields in SECTIONS:
        st.markdown(f"**{title}**")
        visible = [f for f in fields if f.when is None or f.when(data)]
        cols = st.columns(3)
        for i, field in enumerate(visible):
            with cols[i % 3]:
                _widget(field, data)
                if field.path in errors:
                    st.error(errors[field.path])


def _widget(field: Field, data: dict) -> None:
    key = PREFIX + field.path
    if key not in st.session_state:
        st.session_state[key] = to_widget(field, lookup(data, field.path))
    if field.kind == "select":
        options = (field.options or (lambda: _arrivals(data)))()
        if st.session_state[key] not in options:
            options = [st.session_state[key], *options]
        st.selectbox(field.label, options, key=key, help=field.help)
    elif field.kind == "int":
        st.number_input(field.label, step=1, key=key, help=field.help)
    elif field.kind == "float":
        st.number_input(field.label, step=None, format="%g", key=key, help=field.help)
    else:
        st.text_input(field.label, key=key, help=field.help)
