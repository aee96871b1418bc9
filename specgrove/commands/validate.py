"""``specgrove validate SCENARIO --workload W --out DIR [--policies a,b] [--loads 0.4,0.85]``:
the real executor against the calibrated simulator on the same arrivals."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from specgrove.commands import UsageError
from specgrove.commands.executor_args import check_method


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML: deployment, policies, SLO and [calibration] profile")
    parser.add_argument("--workload", required=True, help="scenario TOML ([workload] section) or arrival trace (JSON lines)")
    parser.add_argument("--out", required=True, help="directory for validation.md, validation.json and CDF plots")
    parser.add_argument("--policies", help="tree policies to run in both worlds and rank (default: the scenario's)")
    parser.add_argument("--loads", default="0.4,0.85", help="fractions of the measured capacity (default 0.4,0.85)")
    parser.add_argument("--prompts", help="prompt file to cut prompts from (default: standard-library source)")
    parser.add_argument("--tokenizer", help="tokenizer directory for cutting prompts (default: the demo pair's)")
    parser.add_argument("--seed", type=int, help="seed for the workload (default: its own)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="real runs per load and policy, interleaved; the simulator meets their median (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each real server (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take (default 600)")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 2 for v in values):
        raise UsageError(f"{flag} must list fractions in (0, 2], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from specgrove.calibration.profile import ProfileError, load_profile
    from specgrove.calibration.validate import RunPair, capacity, cdf_plot, real_run, report, rescale, write_arrivals
    from specgrove.commands.load import prompt_pool, resolve_workload
    from specgrove.serve.load import LoadError, cut_prompts
    from specgrove.serve.process import start_server, stop_server
    from specgrove.sim.api import run_scenario
    from specgrove.sim.build import resolve
    from specgrove.sim.scenario import ScenarioError, read_scenario_file

    import numpy as np

    loads = _floats(args.loads, "--loads")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    out = Path(args.out)
    if (out / "validation.json").exists() and not args.overwrite:
        raise UsageError(f"--out {args.out!r} already holds a validation; pass --overwrite to replace it")
    try:
        base, _ = resolve(read_scenario_file(args.scenario), Path(args.scenario).parent)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if not base.calibration.profile:
        raise UsageError(f"{args.scenario}: [calibration] profile is required (the simulator runs on it)")
    try:
        profile = load_profile(base.calibration.profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    policies = [p.strip() for p in (args.policies or base.policies.tree).split(",") if p.strip()]
    for p in policies:
        check_method(p)
    arrivals, _, _, seed = resolve_workload(args.workload, args.seed)
    try:
        prompts = cut_prompts(arrivals, prompt_pool(args, any(a.prompt is None for a in arrivals)), np.random.default_rng([seed, 1]))
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(out / "traces", ignore_errors=True)  # the last validation's real traces (--overwrite)
    dep, pol = base.deployment, base.policies
    server_args = ["--max-batch", str(dep.max_batch), "--budget", str(pol.tree_budget), "--batch-budget",
                   pol.batch_budget, "--scheduler", pol.scheduler, "--max-queue", str(max(1024, 4 * len(arrivals)))]

    def serve(policy: str, trace: Path | None = None):
        print(f"starting a real server: {policy}", flush=True)
        traced = ["--trace", str(trace)] if trace is not None else []
        return start_server("--method", policy, *server_args, *traced, threads=args.threads)

    proc, url = serve(policies[0])
    try:
        cap = capacity(url, arrivals, prompts, args.timeout)
    finally:
        stop_server(proc)
    print(f"capacity ({policies[0]}): {cap:.2f} requests/s", flush=True)
    pairs = []
    for load in loads:
        scaled = rescale(arrivals, load * cap)
        trace_file = out / f"arrivals_load{load:g}.jsonl"
        write_arrivals(scaled, trace_file)
        reals: dict[str, list[tuple[dict, list[dict]]]] = {p: [] for p in policies}
        for repeat in range(args.repeats):
            for policy in policies:  # interleaved: a slow spell of the host hits every policy
                # The real server's own step trace: what the simulator was up against, step by step.
                tag = f"-r{repeat}" if args.repeats > 1 else ""
                trace = out / "traces" / f"load{load:g}-{policy}{tag}.jsonl"
                trace.parent.mkdir(exist_ok=True)
                trace.unlink(missing_ok=True)  # serve appends; an overwritten validation starts afresh
                proc, url = serve(policy, trace)
                try:
                    reals[policy].append(real_run(url, scaled, prompts, base.slo, args.timeout))
                except RuntimeError as exc:
                    raise UsageError(f"load {load:g}, {policy}: {exc}") from None
                finally:
                    stop_server(proc)
        for policy in policies:
            real, real_rows = reals[policy][0]
            data = base.model_dump()
            data["workload"].update(arrival="trace", trace=str(trace_file.resolve()))
            data["duration_s"], data["horizon_s"] = max(scaled[-1].arrival_s, 1e-3), None
            if policy != data["policies"]["tree"]:
                data["policies"].update(tree=policy, tree_options={})
            data["acceptance"]["mode"] = "tabulated"
            sim = run_scenario(data)
            pairs.append(RunPair(load, policy, real, sim.summary, real_rows, sim.requests,
                                 [summary for summary, _ in reals[policy]]))
            median = pairs[-1].real_values()
            print(f"load {load:g} {policy}: real {median['throughput_tokens_per_s']:.1f} tok/s, "
                  f"TPOT {median['tpot_mean_s'] * 1e3:.2f} ms; sim {sim.summary['throughput_tokens_per_s']:.1f} tok/s, "
                  f"TPOT {sim.summary['tpot_s']['mean'] * 1e3:.2f} ms", flush=True)
        cdf_plot(pairs, load, out / f"cdf_load{load:g}.png")
    info = {"command": "specgrove " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "scenario": str(Path(args.scenario).resolve()), "workload": str(Path(args.workload).resolve()),
            "prompts": args.prompts or "standard-library source", "profile": base.calibration.profile,
            "profile_sources": profile.sources, "capacity_requests_per_s": cap, "capacity_policy": policies[0],
            "loads": loads, "policies": policies, "repeats": args.repeats}
    data, text = report(pairs, loads, info)
    (out / "validation.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "validation.md").write_text(text)
    print(text)
    from specgrove.results import command_line, write_manifest

    write_manifest(out, command_line("validate", args, positionals=("scenario",)))
    print(f"wrote {out}/validation.md, validation.json, cdf_load*.png, manifest.json")
    return 0
