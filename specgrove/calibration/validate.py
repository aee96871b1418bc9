"""Validation: the same arrivals through the real executor and through the calibrated
simulator, per policy and load; errors, latency CDFs and the two rankings.

For each load (a fraction of the real server's measured capacity in requests/s) the workload
is rescaled to that mean rate; for each policy a real server runs it (``serve`` + the open-loop
``load`` client) while the simulator runs the very same arrivals with the scenario's profile.
Policies are ranked by mean end-to-end latency (lower is better) in each world; Kendall's tau
says how well the simulator's order matches the real one.

With repeats, every real run is done that many times (the policies interleaved, so a slow
spell of the host hits them all), the simulator is compared with the median of the repeats,
and each metric's real spread, (max - min) / median over the repeats, says how far the real
world itself moves from run to run: the floor under any simulator's error.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from specgrove.sim.workload import Arrival

METRICS = {
    "throughput_tokens_per_s": lambda s: s["throughput_tokens_per_s"],
    "tpot_mean_s": lambda s: s["tpot_s"]["mean"], "tpot_p50_s": lambda s: s["tpot_s"]["p50"],
    "tpot_p99_s": lambda s: s["tpot_s"]["p99"],
    "ttft_mean_s": lambda s: s["ttft_s"]["mean"], "ttft_p50_s": lambda s: s["ttft_s"]["p50"],
    "ttft_p99_s": lambda s: s["ttft_s"]["p99"],
    "e2e_mean_s": lambda s: s["e2e_s"]["mean"], "e2e_p50_s": lambda s: s["e2e_s"]["p50"],
    "e2e_p99_s": lambda s: s["e2e_s"]["p99"],
    "queueing_mean_s": lambda s: s["queueing_s"]["mean"], "queueing_p99_s": lambda s: s["queueing_s"]["p99"],
}
RANK_BY = "e2e_mean_s"


@dataclass
class RunPair:
    load: float
    policy: str
    real: dict  # summary (the first repeat's)
    sim: dict
    real_rows: list[dict]
    sim_rows: list[dict]
    repeats: list[dict] | None = None  # every repeat's summary, ``real`` among them

    def _per_metric(self, stat) -> dict[str, float | None]:
        """``stat`` of each metric's values over the repeats (None where a repeat lacks it)."""
        out = {}
        for name, get in METRICS.items():
            values = [get(s) for s in self.repeats or [self.real]]
            out[name] = None if any(v is None for v in values) else stat(values)
        return out

    def real_values(self) -> dict[str, float | None]:
        """Each metric's real value: the median over the repeats."""
        return self._per_metric(lambda v: float(np.median(v)))

    def real_spread(self) -> dict[str, float | None]:
        """Each metric's (max - min) / median over the repeats (None with one run)."""
        def spread(v):
            median = np.median(v)
            return float((max(v) - min(v)) / median) if len(v) > 1 and median != 0 else None
        return self._per_metric(spread)


def rescale(arrivals: list[Arrival], rate: float) -> list[Arrival]:
    """The same requests at mean rate ``rate`` (req/s): arrival times stretched or squeezed."""
    span = arrivals[-1].arrival_s - arrivals[0].arrival_s
    if len(arrivals) < 2 or span <= 0:
        return arrivals
    factor = (len(arrivals) - 1) / rate / span
    t0 = arrivals[0].arrival_s
    return [replace(a, arrival_s=(a.arrival_s - t0) * factor) for a in arrivals]


def metrics_table(pair: RunPair) -> dict:
    out = {}
    real, spread = pair.real_values(), pair.real_spread()
    for name, get in METRICS.items():
        r, s = real[name], get(pair.sim)
        rel = None if r in (None, 0) or s is None else (s - r) / r
        out[name] = {"real": r, "sim": s, "rel_error": rel, "real_spread": spread[name]}
    return out


def kendall(real_order: list[str], sim_order: list[str]) -> float | None:
    from scipy.stats import kendalltau

    if len(real_order) < 2:
        return None
    pos = {p: i for i, p in enumerate(sim_order)}
    return float(kendalltau(list(range(len(real_order))), [pos[p] for p in real_order]).statistic)


def ranking(pairs: list[RunPair], load: float) -> dict:
    mine = [p for p in pairs if p.load == load]
    real = [p.policy for p in sorted(mine, key=lambda p: (p.real_values()[RANK_BY] or math.inf, p.policy))]
    sim = [p.policy for p in sorted(mine, key=lambda p: (METRICS[RANK_BY](p.sim) or math.inf, p.policy))]
    return {"by": RANK_BY, "real": real, "sim": sim, "kendall_tau": kendall(real, sim)}


def write_arrivals(arrivals: list[Arrival], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for a in arrivals:
            f.write(json.dumps({"arrival_s": a.arrival_s, "prompt_tokens": a.prompt_tokens,
                                "output_tokens": a.output_tokens, "domain": a.domain}) + "\n")


def real_run(url: str, arrivals: list[Arrival], prompts: list, slo, timeout_s: float) -> tuple[dict, list[dict]]:
    from specgrove.serve.load import records, replay
    from specgrove.sim.metrics import request_rows, summarise

    outcomes = asyncio.run(replay(url, arrivals, prompts, 0.0, timeout_s, progress=False))
    recs = records(arrivals, outcomes)
    failed = [r.error for r in recs if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} real requests failed, e.g. {failed[0]}")
    end = max(r.finish_s for r in recs)
    summary = summarise(recs, slo, arrivals[-1].arrival_s, end, {"gpu": None, "draft_gpu": None, "tp_link": None,
                                                                  "draft_link": None})
    return summary, request_rows(recs)


def capacity(url: str, arrivals: list[Arrival], prompts: list, timeout_s: float) -> float:
    """Requests/s the server completes when every request arrives at once."""
    from specgrove.serve.load import replay

    burst = [replace(a, arrival_s=0.0) for a in arrivals]
    outcomes = asyncio.run(replay(url, burst, prompts, 0.0, timeout_s, progress=False))
    done = [o.finish_s for o in outcomes if not o.error]
    if not done:
        raise RuntimeError("no request of the capacity burst finished")
    return len(done) / max(done)


def cdf_plot(pairs: list[RunPair], load: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric in zip(axes, ("ttft_s", "tpot_s", "e2e_s")):
        for i, p in enumerate(q for q in pairs if q.load == load):
            for rows, style, world in ((p.real_rows, "-", "real"), (p.sim_rows, "--", "sim")):
                values = np.sort([r[metric] for r in rows if r[metric] == r[metric]]) * 1e3
                if len(values):
                    ax.plot(values, np.arange(1, len(values) + 1) / len(values), style, color=f"C{i}",
                            label=f"{p.policy} ({world})")
        ax.set(xlabel=f"{metric[:-2].upper()} (ms)", ylabel="fraction of requests", title=f"{metric[:-2].upper()} CDF")
        ax.set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"real (solid) against simulated (dashed), load {load:.0%} of capacity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(pairs: list[RunPair], loads: list[float], info: dict) -> tuple[dict, str]:
    runs = [{"load": p.load, "policy": p.policy, "repeats": len(p.repeats or [p.real]), "metrics": metrics_table(p)}
            for p in pairs]
    rankings = {f"{load:g}": ranking(pairs, load) for load in loads}
    data = {**info, "runs": runs, "ranking": rankings}
    lines = ["# Validation: real executor against the calibrated simulator", "",
             f"Command: `{info['command']}`", "",
             f"Validation workload: `{info['workload']}`, prompts: `{info['prompts']}`; capacity measured "
             f"{info['capacity_requests_per_s']:.2f} req/s ({info['capacity_policy']}).",
             "Calibration profile: `" + info["profile"] + "`, fitted on: " + ", ".join(f"`{s}`" for s in info["profile_sources"]),
             ""]
    for load in loads:
        lines += [f"## Load {load:.0%} of capacity ({load * info['capacity_requests_per_s']:.2f} req/s)", "",
                  "Real: the median of the repeats; real spread: (max - min) / median over them.", "",
                  "| policy | metric | real | sim | error | real spread |", "|---|---|---:|---:|---:|---:|"]
        for run in (r for r in runs if r["load"] == load):
            for name in ("throughput_tokens_per_s", "tpot_mean_s", "tpot_p99_s", "ttft_p50_s", "e2e_mean_s", "e2e_p99_s",
                         "queueing_p99_s"):
                m = run["metrics"][name]
                fmt = (lambda v: "-" if v is None else f"{v:.1f}") if "throughput" in name else \
                      (lambda v: "-" if v is None else f"{v * 1e3:.2f} ms")
                err = "-" if m["rel_error"] is None else f"{m['rel_error']:+.1%}"
                spread = "-" if m["real_spread"] is None else f"{m['real_spread']:.1%}"
                lines.append(f"| {run['policy']} | {name} | {fmt(m['real'])} | {fmt(m['sim'])} | {err} | {spread} |")
        r = rankings[f"{load:g}"]
        tau = "-" if r["kendall_tau"] is None else f"{r['kendall_tau']:.2f}"
        lines += ["", f"Ranking by {r['by']}: real {' < '.join(r['real'])}; sim {' < '.join(r['sim'])}; Kendall tau {tau}.",
                  f"![CDFs](cdf_load{load:g}.png)", ""]
    return data, "\n".join(lines) + "\n"
