"""``specgrove sweep SCENARIO --vary FIELD=V1,V2 ... --out DIR``: variants in parallel.

Checked before any variant runs: the flags, ``--out``, every ``--vary`` field name, and each
variant's size (``--max-requests``). A variant whose values do not validate, or that fails
while it runs, is reported on stderr (one line each) and written as failed; the others run
and are written, and the command exits 1.
"""

from __future__ import annotations

import argparse
import sys

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="base scenario file: TOML, or a run's scenario.json")
    parser.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                        help="a dotted field and its values; repeat for a cross product")
    parser.add_argument("--out", help="directory for sweep.json, sweep.md, sweep.png, variants/, manifest.json")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("--processes", type=int, help="parallel processes (default: CPU count)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed (>= 0)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help="refuse a sweep with a variant expected to simulate more than N requests "
                             "(default 2,000,000)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (on stderr) over variants")


def run(args: argparse.Namespace) -> int:
    from specgrove.commands.sim import check_limits, trace_warning, warn
    from specgrove.results import OutputPathError, check_out_dir, command_line, remove_stale
    from specgrove.sim.api import prepare_sweep, resolve_any, run_sweep
    from specgrove.sim.scenario import ScenarioError, portable
    from specgrove.sim.sweep import parse_vary, table, write_sweep

    if not args.vary:
        raise UsageError("sweep needs at least one --vary FIELD=V1,V2,...")
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")
    max_requests = check_limits(args)
    try:
        out = check_out_dir(args.out, "--out", overwrite=args.overwrite) if args.out else None
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None
    try:
        vary = parse_vary(args.vary)
        base, _ = resolve_any(args.scenario)
        variants = prepare_sweep(base, vary, seed=args.seed, max_requests=max_requests)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    warned = set()
    for v in variants:
        if v.error is None and (line := trace_warning(v.scenario, v.built)) is not None:
            if line not in warned:
                warned.add(line)
                warn(line)
    variants = run_sweep(variants, args.processes, progress=None if args.no_progress else "sweep")
    failed = [v for v in variants if not v.ok]
    if out is not None:
        extra = {"seed": args.seed if args.seed is not None else base.seed, "vary": vary,
                 "variants": [{"vary": v.overrides, "status": "ok" if v.ok else "failed"} for v in variants],
                 "scenario": portable(base)}
        try:
            print(write_sweep(variants, out, list(vary), command_line("sweep", args, positionals=("scenario",)), extra))
            if args.overwrite:
                remove_stale(out, ("sweep.md", "sweep.json", "variants", "manifest.json")
                             + (("sweep.png",) if len(failed) < len(variants) else ()))
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write results: {exc.strerror or exc}") from None
        print(f"wrote {args.out}/sweep.md, sweep.json, sweep.png, variants/, manifest.json")
    else:
        print(table(variants))
    for v in failed:
        print(f"specgrove: error: variant {v.label}: {v.error}", file=sys.stderr)
    if failed:
        print(f"specgrove: error: {len(failed)} of {len(variants)} variants failed"
              + (f"; the others' results are in {args.out}" if out is not None else ""), file=sys.stderr)
        return 1
    return 0
