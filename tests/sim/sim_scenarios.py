"""Small scenarios shared by the simulator tests (fast on a 2-core machine)."""

from specgrove.sim.build import parse_scenario


def small(**overrides) -> dict:
    """One H100 serving Llama-3.1-8B with a 1B draft, Poisson arrivals, short outputs."""
    data = {
        "seed": 11,
        "duration_s": 20.0,
        "cluster": {"gpu": "H100-SXM", "num_nodes": 1, "gpus_per_node": 8},
        "models": {"pair": "llama-3.1-8b/3.2-1b"},
        "deployment": {"num_replicas": 1, "tp": 1, "max_batch": 16},
        "workload": {
            "arrival": "poisson", "rate": 10.0,
            "prompt": {"dist": "uniform", "low": 64, "high": 256},
            "output": {"dist": "uniform", "low": 16, "high": 64},
        },
        "acceptance": {"mode": "tabulated", "num_samples": 256},
        "policies": {"tree": "chain", "tree_options": {"length": 4}, "tree_budget": 4, "router": "least-outstanding"},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


def small_scenario(**overrides):
    return parse_scenario(small(**overrides))
