"""``specgrove sim SCENARIO.toml --out DIR``: simulate one scenario and print a short table."""

from __future__ import annotations

import argparse

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML file (see examples/)")
    parser.add_argument("--out", help="directory for summary.json, requests.csv, scenario.json")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--trace", help="write the run's step trace (the executor's format) to this file")


def short_table(summary: dict, run: dict) -> str:
    def ms(part: dict, key: str) -> str:
        return "-" if part[key] is None else f"{part[key] * 1e3:.1f} ms"

    tau = "-" if summary["mean_tau"] is None else f"{summary['mean_tau']:.2f}"
    util = summary["utilisation"]
    rows = [
        ("requests finished", f"{summary['num_finished']} / {summary['num_requests']}"),
        ("throughput", f"{summary['throughput_tokens_per_s']:.1f} tok/s, {summary['throughput_requests_per_s']:.2f} req/s"),
        ("goodput at SLO", f"{summary['goodput_requests_per_s']:.2f} req/s ({summary['slo_attainment']:.0%})"),
        ("tau (tokens/step)", tau),
        ("TTFT p50 / p99", f"{ms(summary['ttft_s'], 'p50')} / {ms(summary['ttft_s'], 'p99')}"),
        ("TPOT p50 / p99", f"{ms(summary['tpot_s'], 'p50')} / {ms(summary['tpot_s'], 'p99')}"),
        ("E2E p50 / p99", f"{ms(summary['e2e_s'], 'p50')} / {ms(summary['e2e_s'], 'p99')}"),
        ("GPU / TP-link util", f"{util['gpu']:.0%} / {util['tp_link']:.0%}"),
        ("simulated / wall", f"{summary['sim_end_s']:.1f} s / {run['wall_s']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    from specgrove.sim.api import run_scenario
    from specgrove.sim.scenario import ScenarioError

    try:
        result = run_scenario(args.scenario, seed=args.seed, progress=not args.no_progress, trace_path=args.trace)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    print(short_table(result.summary, result.run))
    if args.out:
        out = result.write(args.out)
        print(f"wrote {out}/summary.json, requests.csv, scenario.json, run.json")
    return 0
