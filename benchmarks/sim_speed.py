"""Simulator speed: simulated time over wall time, tabulated and exact acceptance modes.

The scenario of issue 4: 4 replicas of Llama-2-70B, TP4 on 16 H100s, a 7B draft on the same
GPUs, dynamic trees, Poisson arrivals at 80% of capacity, one simulated hour (tabulated mode).
Capacity is measured first: the request rate a saturated run completes. Exact mode builds a
real tree per request per step, so it runs on a shorter horizon (stated in the output).
Finally, wall time at three sizes (1, 4 and 16 replicas at the same per-replica load).

    .venv/bin/python benchmarks/sim_speed.py [--hour-s 3600] [--exact-s 60] [--sizes-s 600]

Writes benchmarks/results/sim_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from specgrove.sim.api import run_scenario
from specgrove.sim.build import load_scenario, with_overrides

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "examples" / "llama70b_4xtp4.toml"
OUT = ROOT / "benchmarks" / "results"


def timed(scenario) -> dict:
    cpu = time.process_time()
    result = run_scenario(scenario, progress=False)
    s = result.summary
    return {
        "sim_s": s["sim_end_s"],
        "wall_s": result.run["wall_s"],
        "cpu_s": time.process_time() - cpu,
        "sim_per_wall": result.run["sim_per_wall"],
        "num_requests": s["num_requests"],
        "throughput_requests_per_s": s["throughput_requests_per_s"],
        "mean_tau": s["mean_tau"],
        "e2e_p50_s": s["e2e_s"]["p50"],
        "gpu_util": s["utilisation"]["gpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hour-s", type=float, default=3600.0)
    parser.add_argument("--exact-s", type=float, default=60.0)
    parser.add_argument("--sizes-s", type=float, default=600.0)
    args = parser.parse_args()
    base = with_overrides(load_scenario(BASE), {"policies.tree": "dynamic", "acceptance.mode": "tabulated"})

    # Capacity: offer far more than it can serve, stop at a horizon, count completions.
    saturated = with_overrides(base, {"workload.rate": 200.0, "duration_s": 60.0, "horizon_s": 60.0})
    sat = run_scenario(saturated).summary
    capacity = sat["num_finished"] / 60.0
    rate = 0.8 * capacity
    print(f"capacity ~ {capacity:.2f} req/s; running at 80%: {rate:.2f} req/s")

    runs = {}
    runs["tabulated"] = timed(with_overrides(base, {"workload.rate": rate, "duration_s": args.hour_s}))
    print("tabulated", runs["tabulated"])
    runs["exact"] = timed(with_overrides(base, {"workload.rate": rate, "duration_s": args.exact_s, "acceptance.mode": "exact"}))
    print("exact", runs["exact"])

    sizes = []
    for replicas in (1, 4, 16):
        nodes = max(1, replicas * 4 // 8)
        scenario = with_overrides(base, {
            "workload.rate": rate * replicas / 4, "duration_s": args.sizes_s,
            "deployment.num_replicas": replicas, "cluster.num_nodes": nodes,
        })
        row = timed(scenario) | {"replicas": replicas, "gpus": replicas * 4}
        sizes.append(row)
        print("size", row)

    info = {
        "scenario": str(BASE.relative_to(ROOT)),
        "capacity_requests_per_s": capacity,
        "rate_requests_per_s": rate,
        "hour_s": args.hour_s,
        "exact_horizon_s": args.exact_s,
        "sizes_horizon_s": args.sizes_s,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end",
        "runs": runs,
        "sizes": sizes,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sim_speed.json").write_text(json.dumps(info, indent=2) + "\n")
    (OUT / "sim_speed.md").write_text(markdown(info))
    print(markdown(info))


def markdown(info: dict) -> str:
    t, e = info["runs"]["tabulated"], info["runs"]["exact"]
    lines = [
        "# Simulator speed",
        "",
        f"Scenario: `{info['scenario']}` (4 x TP4 Llama-2-70B + 7B draft on 16 H100, dynamic trees), Poisson at",
        f"80% of capacity = {info['rate_requests_per_s']:.2f} req/s (capacity measured: {info['capacity_requests_per_s']:.2f} req/s).",
        f"Machine: {info['machine']} (other work was running; CPU time is given too).",
        "",
        "| mode | simulated s | wall s | CPU s | simulated / wall | requests | tau |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| tabulated | {t['sim_s']:.0f} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} | **{t['sim_per_wall']:.0f}** | {t['num_requests']} | {t['mean_tau']:.2f} |",
        f"| exact (horizon {info['exact_horizon_s']:.0f} s) | {e['sim_s']:.0f} | {e['wall_s']:.1f} | {e['cpu_s']:.1f} | **{e['sim_per_wall']:.1f}** | {e['num_requests']} | {e['mean_tau']:.2f} |",
        "",
        f"Wall time by size (tabulated, {info['sizes_horizon_s']:.0f} simulated s, same load per replica):",
        "",
        "| replicas | GPUs | requests | wall s | simulated / wall |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in info["sizes"]:
        lines.append(f"| {row['replicas']} | {row['gpus']} | {row['num_requests']} | {row['wall_s']:.1f} | {row['sim_per_wall']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
