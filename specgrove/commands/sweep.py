"""``specgrove sweep SCENARIO.toml --vary FIELD=V1,V2 ... --out DIR``: variants in parallel."""

from __future__ import annotations

import argparse
from pathlib import Path

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="base scenario TOML file")
    parser.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                        help="a dotted field and its values; repeat for a cross product")
    parser.add_argument("--out", help="directory for sweep.json, sweep.md and sweep.png")
    parser.add_argument("--processes", type=int, help="parallel processes (default: CPU count)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")


def run(args: argparse.Namespace) -> int:
    from specgrove.sim.api import sweep
    from specgrove.sim.scenario import ScenarioError
    from specgrove.sim.sweep import parse_vary, table, write_sweep

    if not args.vary:
        raise UsageError("sweep needs at least one --vary FIELD=V1,V2,...")
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")
    try:
        results = sweep(args.scenario, parse_vary(args.vary), seed=args.seed, processes=args.processes)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if args.out:
        print(write_sweep(results, Path(args.out), list(results[0][0])))
        print(f"wrote {args.out}/sweep.md, sweep.json, sweep.png")
    else:
        print(table(results))
    return 0
