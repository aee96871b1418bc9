"""``specgrove replay RUN_DIR --scenario S.toml --vary FIELD=V1,V2 --out DIR``: a recorded real
run replayed in the simulator under other policies."""

from __future__ import annotations

import argparse
from pathlib import Path

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a `specgrove load` output directory (requests.csv)")
    parser.add_argument("--scenario", required=True,
                        help="scenario TOML describing the deployment; must name a calibration profile")
    parser.add_argument("--trace", help="the server's step trace of the run (default RUN_DIR/trace.jsonl)")
    parser.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                        help="policies (or any field) to replay under; repeat for a cross product")
    parser.add_argument("--out", required=True, help="directory for sweep.json, sweep.md, sweep.png")
    parser.add_argument("--processes", type=int, default=1, help="parallel processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from specgrove.calibration.profile import ProfileError
    from specgrove.calibration.replay import ReplayError, prepare
    from specgrove.sim.api import sweep
    from specgrove.sim.build import resolve
    from specgrove.sim.scenario import ScenarioError, read_scenario_file
    from specgrove.sim.sweep import parse_vary, write_sweep

    if not args.vary:
        raise UsageError("replay needs at least one --vary FIELD=V1,V2,... (e.g. policies.tree=static,dynamic)")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {args.run_dir!r} does not exist")
    try:
        base, _ = resolve(read_scenario_file(args.scenario), Path(args.scenario).parent)
        if not base.calibration.profile:
            raise UsageError(f"{args.scenario}: [calibration] profile is required (policies the run did not record "
                             "are simulated on it)")
        data, methods, n = prepare(run_dir, base.model_dump(), base.calibration.profile,
                                   Path(args.trace) if args.trace else None, Path(args.out))
        results = sweep(data, parse_vary(args.vary), processes=args.processes)
    except (ScenarioError, ReplayError, ProfileError) as exc:
        raise UsageError(str(exc)) from None
    print(f"replayed {n} requests of {run_dir}; measured acceptance for {', '.join(methods)}, "
          "the calibrated model for the rest")
    print(write_sweep(results, Path(args.out), list(results[0][0])))
    from specgrove.results import command_line, write_manifest

    write_manifest(args.out, command_line("replay", args, positionals=("run_dir",)))
    print(f"wrote {args.out}/sweep.md, sweep.json, sweep.png, arrivals.jsonl, replay_profile.json, manifest.json")
    return 0
