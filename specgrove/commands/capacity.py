"""``specgrove capacity SCENARIO --slo ttft_p99=0.5,tpot_p99=0.05 --out DIR``: the highest
request rate the scenario serves within the SLO, by bisection over simulated runs, per tree
policy (``--policies``). See ``specgrove.sim.capacity`` for the SLO names and the search.

Checked before any run: the flags, the SLO string, the policies, ``--out`` and the scenario.
"""

from __future__ import annotations

import argparse
import sys

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from specgrove.sim.capacity import DEFAULT_MAX_RUNS, DEFAULT_TOLERANCE

    parser.add_argument("scenario", help="scenario file: TOML, or a run's scenario.json (its workload.rate is the start)")
    parser.add_argument("--slo", metavar="METRIC=VALUE,...",
                        help="bounds on the run summary: <ttft|tpot|e2e|queueing>_<mean|p50|p90|p99>=SECONDS "
                             "(an upper bound) or slo_attainment=FRACTION (a lower bound), comma-separated "
                             "(default: the scenario's [slo] at p99)")
    parser.add_argument("--policies", metavar="P1,P2,...",
                        help="tree policies to compare, comma-separated, e.g. static,dynamic "
                             "(default: the scenario's policies.tree)")
    parser.add_argument("--low", type=float, metavar="R", help="lowest rate to try, req/s (default: bracket from the scenario's rate)")
    parser.add_argument("--high", type=float, metavar="R", help="highest rate to try, req/s (default: bracket from the scenario's rate)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="stop when the failing rate is within this fraction above the passing one")
    parser.add_argument("--max-runs", type=int, default=DEFAULT_MAX_RUNS, metavar="N", help="most simulated runs per policy")
    parser.add_argument("--out", help="directory for capacity.json, capacity.md, capacity.png, manifest.json")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("--processes", type=int, help="parallel processes, one policy each (default: CPU count)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed (>= 0)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help="refuse a run expected to simulate more than N requests (default 2,000,000)")


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.tolerance < 1:
        raise UsageError(f"--tolerance must be in (0, 1), got {args.tolerance}")
    if args.max_runs < 2:
        raise UsageError(f"--max-runs must be >= 2, got {args.max_runs}")
    for flag, value in (("--low", args.low), ("--high", args.high)):
        if value is not None and not (value > 0 and value < float("inf")):
            raise UsageError(f"{flag} must be a rate > 0, got {value}")
    if args.low is not None and args.high is not None and args.low >= args.high:
        raise UsageError(f"--low {args.low:g} must be below --high {args.high:g}")
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")


def run(args: argparse.Namespace) -> int:
    from specgrove.commands.sim import check_limits
    from specgrove.results import RESULT_NAMES, OutputPathError, check_out_dir, command_line, remove_stale
    from specgrove.sim.api import resolve_any
    from specgrove.sim.capacity import FILES, capacity, default_slo, parse_slo, policy_scenarios, table, write_capacity
    from specgrove.sim.scenario import ScenarioError

    _check(args)
    max_requests = check_limits(args)
    names = tuple(dict.fromkeys(RESULT_NAMES + FILES))
    try:
        out = check_out_dir(args.out, "--out", marker=names, overwrite=args.overwrite) if args.out else None
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None
    try:
        bounds = parse_slo(args.slo) if args.slo is not None else None
        policies = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else None
        if args.policies is not None and not policies:
            raise UsageError(f"--policies {args.policies!r}: name at least one tree policy")
        base, _ = resolve_any(args.scenario)
        if args.seed is not None:
            base = base.model_copy(update={"seed": args.seed})
        if bounds is None:
            bounds = default_slo(base)
        policy_scenarios(base, policies)  # unknown policies: refused before any run
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    slo_text = ", ".join(f"{b.name}{'>=' if b.is_lower else '<='}{b.limit:g}" for b in bounds)

    def report(policy, probe):
        print(f"  {policy}: {probe.rate:.4g} req/s {'meets' if probe.meets else 'misses'} the SLO "
              f"({probe.wall_s:.2f} s)", file=sys.stderr)

    processes = args.processes if args.processes is not None else None
    try:
        results = capacity(base, bounds, policies, processes=processes, low=args.low, high=args.high,
                           tolerance=args.tolerance, max_runs=args.max_runs, max_requests=max_requests,
                           on_probe=report if (processes == 1 or (policies is not None and len(policies) == 1)
                                               or policies is None) else None)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    print(table(results, bounds))
    if out is not None:
        try:
            write_capacity(results, bounds, base, out, args.tolerance, slo_text,
                           command_line("capacity", args, positionals=("scenario",)))
            if args.overwrite:
                remove_stale(out, FILES, names)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write results: {exc.strerror or exc}") from None
        print(f"wrote {out}/capacity.json, capacity.md, capacity.png, manifest.json")
    return 0
