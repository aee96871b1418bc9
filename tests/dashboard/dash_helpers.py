"""Shared by the dashboard tests: the repository root and a small scenario (the demo pair on
this CPU, five seconds of arrivals, exact acceptance so traces record their trees)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "name": "small", "seed": 3, "duration_s": 5.0,
    "cluster": {"gpu": "cpu-2core", "num_nodes": 1, "gpus_per_node": 1, "intra_link": "shared-memory"},
    "models": {"pair": "demo"},
    "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 8},
    "workload": {"arrival": "poisson", "rate": 4.0, "prompt": {"dist": "uniform", "low": 16, "high": 64},
                 "output": {"dist": "fixed", "value": 32}},
    "acceptance": {"mode": "exact"},
    "policies": {"tree": "dynamic", "tree_options": {"topk": 4, "frontier": 4, "max_depth": 5}, "tree_budget": 16},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
}
