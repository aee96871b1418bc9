"""Fuzz the scenario fields through the CLI: whatever a user writes, ``specgrove sim`` exits 0
or 2 (one line), never with a traceback, and never runs for ever.

Each example takes a small, fast scenario (the demo pair on one CPU, a 0.5 s horizon) and
replaces a few fields with values from a pool of trouble (huge, tiny, negative, zero, NaN and
infinity as floats and as strings, wrong types) or plausible ones (small integers and floats,
each field's own valid choices), so that many examples validate and run. The scenario goes in
as JSON (which, unlike TOML, can carry NaN and 1e308 as they are). ``--max-requests 300``
bounds the work of a run that validates.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specgrove import registry
from specgrove.cli import main
from specgrove.sim.hardware import GPUS
from specgrove.sim.models import PAIRS

BASE = {
    "seed": 1, "duration_s": 1.0, "horizon_s": 0.5,
    "cluster": {"gpu": "cpu-2core", "num_nodes": 1, "gpus_per_node": 2, "intra_link": "shared-memory"},
    "models": {"pair": "demo"},
    "deployment": {"max_batch": 8},
    "workload": {"rate": 5.0, "prompt": {"dist": "fixed", "value": 32}, "output": {"dist": "fixed", "value": 16}},
    "acceptance": {"mode": "exact", "num_samples": 64},
    "policies": {"tree": "chain", "tree_options": {"length": 3}, "tree_budget": 3},
}

TROUBLE = [
    -1, 0, 1, 2, 3, 7, 100, 0.5, 3.7, 1e6, 1e308, -1e308, 10**30, -(10**30), 1e-300, 5e-324,
    math.nan, math.inf, -math.inf, "nan", "inf", "NaN", "-1", "abc", "", True, False, None, [], {}, [1, 2], {"a": 1},
]

FIELDS = {
    "seed": [], "duration_s": [], "horizon_s": [], "name": ["x" * 300],
    "cluster.gpu": sorted(GPUS), "cluster.num_nodes": [], "cluster.gpus_per_node": [],
    "models.pair": sorted(PAIRS), "deployment.tp": [], "deployment.num_replicas": [], "deployment.max_batch": [],
    "deployment.kv_memory_fraction": [], "deployment.mfu": [], "deployment.mbu": [], "deployment.forward_overhead_s": [],
    "deployment.draft_placement": ["same", "separate"], "deployment.microbatches": [],
    "workload.arrival": ["poisson", "gamma", "onoff", "trace"], "workload.rate": [], "workload.cv": [],
    "workload.on_s": [], "workload.off_s": [], "workload.domains": [{"a": 1e308, "b": 1e-300}],
    "workload.prompt.value": [600, 10_000_000], "workload.prompt.dist": ["uniform", "lognormal"], "workload.prompt.sigma": [],
    "workload.prompt.median": [], "workload.prompt.high": [], "workload.output.max": [], "workload.output.dist": ["lognormal"],
    "acceptance.mode": ["exact", "tabulated"], "acceptance.num_samples": [],
    "acceptance.draft.confidence_mean": [], "acceptance.draft.confidence_concentration": [],
    "acceptance.draft.tail_ratio": [], "acceptance.draft.gamma": [],
    "policies.tree": registry.names("tree"), "policies.tree_budget": [], "policies.batch_node_budget": [],
    "policies.batch_budget": registry.names("batch-budget"), "policies.scheduler": registry.names("scheduler"),
    "policies.router": registry.names("router"), "slo.ttft_s": [], "slo.e2e_s": [],
}


@st.composite
def scenarios(draw) -> tuple[dict, dict]:
    chosen = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True))
    # Half trouble, half plausible: a value that validates must then run, and end.
    changes = {}
    for f in chosen:
        plausible = [st.integers(0, 64), st.floats(1e-3, 1e3)] + ([st.sampled_from(FIELDS[f])] if FIELDS[f] else [])
        changes[f] = draw(st.one_of(st.sampled_from(TROUBLE), *plausible))
    data = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data, changes


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_sim_on_any_field_values_exits_0_or_2_in_bounded_time(case):
    data, changes = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.json"
        path.write_text(json.dumps(data))  # NaN and Infinity as JSON's (Python's) tokens
        code = main(["sim", str(path), "--no-progress", "--max-requests", "300"])
    assert code in (0, 2), changes
