"""Simulated clusters: the 7B and 70B pairs on H100s, across load, TP, draft placement and
the batch-budget policy, every tree policy on the same arrivals (same seed).

Four experiments, each a sweep around one base deployment per pair:

* ``load``: the arrival rate, every tree policy;
* ``tp``: the target's tensor-parallel degree at a middle load;
* ``placement``: the draft on the target's GPUs or on a GPU of its own (two micro-batches);
* ``batch-budget``: how a step's node cap (``batch_node_budget``) is split, at the top load,
  with exact acceptance (a tabulated step splits the cap uniformly whatever the policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from specgrove.study.settings import DYNAMIC, METHODS, STATIC, Settings, SimPair


def base_scenario(p: SimPair, s: Settings) -> dict:
    """One replica of the pair on a node of 8 H100s; lognormal lengths that fit the pair's
    context (the 68M draft reads 2048 tokens at most)."""
    return {
        "name": f"study-{p.key}", "seed": 11, "duration_s": s.sim_duration_s,
        "cluster": {"gpu": "H100-SXM", "num_nodes": 1, "gpus_per_node": 8, "intra_link": "nvlink"},
        "models": {"pair": p.pair},
        "deployment": {"num_replicas": 1, "tp": p.tp, "draft_placement": "same", "max_batch": 64},
        "workload": {"arrival": "poisson", "rate": p.mid_rate,
                     "prompt": {"dist": "lognormal", "median": 384, "sigma": 0.8, "max": 1024},
                     "output": {"dist": "lognormal", "median": 192, "sigma": 0.6, "max": 512}},
        "acceptance": {"mode": "tabulated", "num_samples": s.sim_samples},
        "policies": {"tree": "dynamic", "tree_budget": s.budget, "batch_budget": "uniform", "scheduler": "fcfs",
                     "router": "round-robin"},
        "slo": {"ttft_s": 2.0, "tpot_s": 0.05},
    }


def experiments(p: SimPair, s: Settings) -> list[tuple[str, str, dict[str, list]]]:
    """(experiment, the field it varies, the sweep's ``vary``) for one pair."""
    deploy = list(s.deploy_policies)
    out = [
        ("load", "workload.rate", {"workload.rate": list(p.rates), "policies.tree": list(METHODS)}),
        ("tp", "deployment.tp", {"deployment.tp": list(p.tps), "policies.tree": deploy}),
        ("placement", "deployment.draft_placement",
         {"deployment.draft_placement": ["same", "separate"], "policies.tree": deploy}),
    ]
    if p.key in s.budget_pairs:
        out.append(("batch-budget", "policies.batch_budget",
                    {"policies.batch_budget": ["uniform", "greedy-global"],
                     "policies.tree": [t for t in deploy if t != "ar"],
                     "policies.batch_node_budget": [s.batch_node_budget], "workload.rate": [max(p.rates)],
                     "acceptance.mode": ["exact"], "duration_s": [s.budget_duration_s]}))
    return out


def summary_row(summary: dict) -> dict:
    pct = lambda key, q: summary[key][q]  # noqa: E731
    util = summary.get("utilisation") or {}
    return {
        "throughput_tokens_per_s": summary["throughput_tokens_per_s"],
        "throughput_requests_per_s": summary["throughput_requests_per_s"],
        "goodput_requests_per_s": summary["goodput_requests_per_s"], "slo_attainment": summary["slo_attainment"],
        "mean_tau": summary["mean_tau"], "ttft_p50_s": pct("ttft_s", "p50"), "ttft_p99_s": pct("ttft_s", "p99"),
        "tpot_p50_s": pct("tpot_s", "p50"), "tpot_p99_s": pct("tpot_s", "p99"), "e2e_mean_s": pct("e2e_s", "mean"),
        "e2e_p50_s": pct("e2e_s", "p50"), "e2e_p99_s": pct("e2e_s", "p99"), "num_requests": summary["num_requests"],
        "num_finished": summary["num_finished"], "num_rejected": summary["num_rejected"],
        "gpu_utilisation": util.get("gpu"),
    }


def run_sim(settings: Settings, log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """Every experiment of every pair: one row per run."""
    from specgrove.sim.api import sweep

    started = time.perf_counter()
    rows = []
    for p in settings.sim_pairs:
        base = base_scenario(p, settings)
        for name, x_field, vary in experiments(p, settings):
            log(f"simulated: {p.pair}, {name}")
            for overrides, result in sweep(base, vary, processes=settings.processes):
                rows.append({"experiment": name, "pair": p.pair, "x_field": x_field,
                             "x": overrides[x_field], "policy": overrides["policies.tree"],
                             "tp": result.scenario.deployment.tp, "rate": result.scenario.workload.rate,
                             **summary_row(result.summary), "wall_s": result.run["wall_s"]})
    return rows, {"seconds": time.perf_counter() - started}


def speedups(rows: list[dict]) -> list[dict]:
    """Dynamic trees against each static tree and ``ar`` at the same setting: mean end-to-end
    latency and p50 TPOT as baseline / dynamic (above 1: dynamic is faster), throughput as
    dynamic / baseline."""
    out = []
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["experiment"], r["pair"], r["x"]), {})[r["policy"]] = r
    for (experiment, pair, x), by_policy in cells.items():
        for cand in DYNAMIC:
            for base in (*STATIC, "ar"):
                c, b = by_policy.get(cand), by_policy.get(base)
                if c is None or b is None:
                    continue
                out.append({"experiment": experiment, "pair": pair, "x_field": c["x_field"], "x": x,
                            "dynamic": cand, "baseline": base,
                            "e2e_speedup": _ratio(b["e2e_mean_s"], c["e2e_mean_s"]),
                            "tpot_speedup": _ratio(b["tpot_p50_s"], c["tpot_p50_s"]),
                            "throughput_ratio": _ratio(c["throughput_tokens_per_s"], b["throughput_tokens_per_s"])})
    return out


def _ratio(num, den) -> float:
    return float("nan") if num is None or not den else num / den
