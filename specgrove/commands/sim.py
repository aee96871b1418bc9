"""``specgrove sim SCENARIO --out DIR``: simulate one scenario and print a short table.

Everything that can be checked is checked before the run: the scenario (TOML, or the JSON a
run writes as ``scenario.json``), ``--out`` and ``--trace``, and the run's size (about how many
requests it simulates, against ``--max-requests``).
"""

from __future__ import annotations

import argparse
import sys

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?",
                        help="scenario file: TOML (see examples/, `--template`, and the reference in "
                             "docs/simulator.md), or a run's scenario.json")
    parser.add_argument("--template", action="store_true",
                        help="print a commented scenario TOML with every field at its default, and exit")
    parser.add_argument("--out", help="directory for summary.json, requests.csv, scenario.json, run.json, manifest.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in --out (and an existing --trace file)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed (>= 0)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help="refuse a run expected to simulate more than N requests (default 2,000,000)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-plots", action="store_true",
                        help="skip cdf.png (TTFT/TPOT/E2E CDFs) and timeseries.png (batch, KV use, queue per replica)")
    parser.add_argument("--trace", help="write the run's step trace (the executor's format) to this file")
    parser.epilog = ("Scenario reference: docs/simulator.md (every section and field); "
                     "`specgrove sim --template` prints a commented scenario with every default, "
                     "`specgrove presets` the GPU, link, model and pair names.")


def check_limits(args: argparse.Namespace) -> int:
    """The seed and --max-requests flags; returns the request limit."""
    from specgrove.sim.api import MAX_REQUESTS

    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.max_requests is not None and args.max_requests < 1:
        raise UsageError(f"--max-requests must be >= 1, got {args.max_requests}")
    return MAX_REQUESTS if args.max_requests is None else args.max_requests


def warn(message: str) -> None:
    print(f"specgrove: warning: {message}", file=sys.stderr)


def trace_warning(scenario, built, where: str = "") -> str | None:
    """The line to warn with when trace rows come after ``duration_s`` (they are not replayed)."""
    from specgrove.sim.api import trace_rows_dropped

    dropped = trace_rows_dropped(scenario, built)
    if not dropped:
        return None
    return (f"{where}workload.trace: {dropped} of {len(built.trace)} rows arrive after duration_s = "
            f"{scenario.duration_s:g} s and are not replayed (raise duration_s to replay them; "
            "the summary counts them as arrivals_after_horizon)")


def short_table(summary: dict, run: dict) -> str:
    def ms(part: dict, key: str) -> str:
        return "-" if part[key] is None else f"{part[key] * 1e3:.1f} ms"

    tau = "-" if summary["mean_tau"] is None else f"{summary['mean_tau']:.2f}"
    util = summary["utilisation"]
    rejected = summary.get("rejected", {})
    clamped = summary.get("clamped", {})
    why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in rejected.items() if n)
    draft = f"{util['draft_gpu']:.0%}" if util.get("draft_gpu") else "shared"
    rows = [
        ("requests finished", f"{summary['num_finished']} / {summary['num_requests']}"),
        ("requests rejected", f"{summary['num_rejected']}" + (f" ({why})" if why else "")),
    ]
    if any(clamped.values()):
        rows.append(("lengths clamped", f"{clamped.get('prompt', 0)} prompts, {clamped.get('output', 0)} outputs "
                                        "(at their max)"))
    if summary.get("arrivals_after_horizon"):
        rows.append(("trace rows not run", f"{summary['arrivals_after_horizon']} (after duration_s)"))
    rows += [
        ("throughput", f"{summary['throughput_tokens_per_s']:.1f} tok/s, {summary['throughput_requests_per_s']:.2f} req/s"),
        ("goodput at SLO", f"{summary['goodput_requests_per_s']:.2f} req/s ({summary['slo_attainment']:.0%})"),
        ("tau (tokens/step)", tau),
        ("TTFT p50 / p99", f"{ms(summary['ttft_s'], 'p50')} / {ms(summary['ttft_s'], 'p99')}"),
        ("TPOT p50 / p99", f"{ms(summary['tpot_s'], 'p50')} / {ms(summary['tpot_s'], 'p99')}"),
        ("E2E p50 / p99", f"{ms(summary['e2e_s'], 'p50')} / {ms(summary['e2e_s'], 'p99')}"),
        ("GPU / draft GPU / TP link", f"{util['gpu']:.0%} / {draft} / {util['tp_link']:.0%}"),
        ("simulated / wall", f"{summary['sim_end_s']:.1f} s / {run['wall_s']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    from specgrove.results import OutputPathError, atomic_path, check_out_dir, check_output_file, command_line, remove_stale
    from specgrove.sim.api import Result, check_size, resolve_any, run_scenario
    from specgrove.sim.scenario import ScenarioError

    if args.template:
        from specgrove.sim.template import template

        sys.stdout.write(template())
        return 0
    if args.scenario is None:
        raise UsageError("sim needs a SCENARIO file (or --template to print one)")
    max_requests = check_limits(args)
    try:
        out = check_out_dir(args.out, "--out", overwrite=args.overwrite) if args.out else None
        if args.trace:
            check_output_file(args.trace, "--trace", overwrite=args.overwrite)
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None
    try:
        scenario, built = resolve_any(args.scenario)
        if args.seed is not None:
            scenario = scenario.model_copy(update={"seed": args.seed})
        check_size(scenario, built, max_requests)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if (line := trace_warning(scenario, built)) is not None:
        warn(line)

    def simulate(trace_path=None):
        return run_scenario(scenario, built=built, progress=not args.no_progress, trace_path=trace_path,
                            max_requests=None)

    try:
        if args.trace:  # written beside, renamed into place when the run is done
            with atomic_path(args.trace) as tmp:
                result: Result = simulate(tmp)
        else:
            result = simulate()
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    print(short_table(result.summary, result.run))
    if out is not None:
        try:
            result.write(out, command_line("sim", args, positionals=("scenario",)), plots=not args.no_plots)
            if args.overwrite:
                remove_stale(out, (*Result.FILES, *(() if args.no_plots else Result.PLOTS), "manifest.json"))
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot write results: {exc.strerror or exc}") from None
        plots = "" if args.no_plots else ", cdf.png, timeseries.png"
        print(f"wrote {out}/summary.json, requests.csv, scenario.json, run.json, manifest.json{plots}")
    return 0
