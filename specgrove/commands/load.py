"""``specgrove load WORKLOAD --url URL --out DIR``: open-loop replay against a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

from specgrove.commands import UsageError

MAX_REQUESTS = 100_000  # a bounded run: more is refused, not attempted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", help="arrival trace (JSON lines, the simulator's format) or scenario TOML")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default http://127.0.0.1:8000)")
    parser.add_argument("--out", required=True, help="directory for requests.csv, summary.json and load.json")
    parser.add_argument("--prompts", help="JSON-lines prompt file ({\"text\": ...} per line) to cut prompts from "
                                          "(default: Python standard-library source)")
    parser.add_argument("--tokenizer", help="tokenizer directory for cutting prompts to length (default: the demo pair's)")
    parser.add_argument("--seed", type=int, help="seed for arrivals (scenario) and prompt choice (default: the scenario's, else 0)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of every request (default 0)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take (default 600)")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def resolve_workload(path: str, seed: int | None):
    """(arrivals, SLO, window seconds, seed) from a scenario TOML or an arrival trace."""
    from specgrove.sim.build import resolve
    from specgrove.sim.cluster import rng_streams
    from specgrove.sim.scenario import ScenarioError, SloSpec, read_scenario_file
    from specgrove.sim.workload import ArrivalTraceError, load_trace, scenario_arrivals

    try:
        if path.endswith(".toml"):
            scenario, built = resolve(read_scenario_file(path), Path(path).parent)
            seed = scenario.seed if seed is None else seed
            rng = rng_streams(seed)[0]
            arrivals = []
            for a in scenario_arrivals(scenario.workload, scenario.duration_s, rng, built.trace):
                arrivals.append(a)
                if len(arrivals) > MAX_REQUESTS:
                    raise UsageError(f"{path}: the workload has more than {MAX_REQUESTS} requests; shorten duration_s")
            return arrivals, scenario.slo, scenario.duration_s, seed
        arrivals = load_trace(path)
    except (ScenarioError, ArrivalTraceError) as exc:
        raise UsageError(str(exc)) from None
    if len(arrivals) > MAX_REQUESTS:
        raise UsageError(f"{path}: the trace has {len(arrivals)} requests; at most {MAX_REQUESTS}")
    return arrivals, SloSpec(), arrivals[-1].arrival_s, 0 if seed is None else seed


def prompt_pool(args: argparse.Namespace, needed: bool) -> list[int]:
    if not needed:
        return []
    from specgrove.serve.load import LoadError, prompt_texts

    try:
        texts = prompt_texts(args.prompts)
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    from transformers import AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = args.tokenizer or str(Path(__file__).resolve().parent.parent / "assets" / "demo" / "target")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--tokenizer {path!r} could not be loaded: {str(exc).splitlines()[0]}") from None
    return [t for text in texts for t in tok(text)["input_ids"]]


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, got {args.url!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a directory")
    if (out / "requests.csv").exists() and not args.overwrite:
        raise UsageError(f"--out {args.out!r} already holds a run's results; pass --overwrite to replace them")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-check").touch()
        (out / ".write-check").unlink()
    except OSError as exc:
        raise UsageError(f"--out {args.out!r} is not writable: {exc.strerror}") from None

    import numpy as np

    from specgrove.serve.load import LoadError, cut_prompts, records, replay
    from specgrove.sim.metrics import request_rows, summarise, write_requests_csv, write_summary

    arrivals, slo, window_s, seed = resolve_workload(args.workload, args.seed)
    pool = prompt_pool(args, any(a.prompt is None for a in arrivals))
    try:
        prompts = cut_prompts(arrivals, pool, np.random.default_rng([seed, 1]))
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    started = time.time()
    outcomes = asyncio.run(replay(args.url.rstrip("/"), arrivals, prompts, args.temperature, args.timeout,
                                  progress=not args.no_progress))
    recs = records(arrivals, outcomes)
    finishes = [r.finish_s for r in recs if not math.isnan(r.finish_s)]
    end_s = max(finishes) if finishes else 0.0
    unmeasured = {"gpu": None, "draft_gpu": None, "tp_link": None, "draft_link": None}
    summary = summarise(recs, slo, window_s, end_s, unmeasured)
    write_requests_csv(request_rows(recs), out / "requests.csv")
    write_summary(summary, out / "summary.json")
    (out / "load.json").write_text(json.dumps({
        "url": args.url, "workload": str(Path(args.workload).resolve()), "seed": seed,
        "num_requests": len(arrivals), "temperature": args.temperature, "started_at": started,
        "wall_s": time.time() - started, "prompts": args.prompts, "tokenizer": args.tokenizer}, indent=2) + "\n")
    failed = sum(1 for r in recs if r.error)
    print(f"{summary['num_finished']} / {len(recs)} requests finished, {failed} failed "
          f"({summary['num_rejected']} rejected); {summary['throughput_tokens_per_s']:.1f} tok/s; "
          f"TTFT p50 {_ms(summary['ttft_s']['p50'])}, TPOT p50 {_ms(summary['tpot_s']['p50'])}, "
          f"E2E p99 {_ms(summary['e2e_s']['p99'])}")
    from specgrove.serve.load import stats_table

    print(stats_table(summary))
    from specgrove.results import command_line, write_manifest

    write_manifest(out, command_line("load", args, positionals=("workload",)), seed=seed)
    print(f"wrote {out}/requests.csv, summary.json, load.json, manifest.json")
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f} ms"
