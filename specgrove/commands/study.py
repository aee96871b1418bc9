"""``specgrove study --out DIR [--quick]``: dynamic against static trees and plain decoding,
in real runs on this machine and in simulated H100 clusters; DIR/report.md, figures, CSVs."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import time
from pathlib import Path

from specgrove.commands import UsageError

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory for report.md, its figures and CSVs")
    parser.add_argument("--quick", action="store_true",
                        help="small prompt subsets, few tokens, 1 repeat, short simulations (under 3 minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the real runs (default 1)")
    parser.add_argument("--prompts-dir", default=str(REPO_PROMPTS),
                        help="directory holding code.jsonl and prose.jsonl (default: the repository's benchmarks/prompts)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")


def check(args: argparse.Namespace) -> tuple[Path, Path]:
    out, prompts = Path(args.out), Path(args.prompts_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, not a directory")
    if (out / "report.md").exists() and not args.overwrite:
        raise UsageError(f"--out {args.out!r} already holds a report; pass --overwrite or choose another directory")
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    for domain in ("code", "prose"):
        if not (prompts / f"{domain}.jsonl").is_file():
            raise UsageError(f"--prompts-dir {args.prompts_dir!r} has no {domain}.jsonl")
    if importlib.util.find_spec("torch") is None:
        raise UsageError("study runs the real executor: install the 'executor' extra (torch)")
    return out, prompts


def run(args: argparse.Namespace) -> int:
    from specgrove.study import FULL, QUICK, run_study

    out, prompts = check(args)
    words = ["specgrove", "study", "--out", args.out] + (["--quick"] if args.quick else [])
    if args.threads != 1:
        words += ["--threads", str(args.threads)]
    started = time.perf_counter()
    report = run_study(out, QUICK if args.quick else FULL, shlex.join(words), prompts, args.threads,
                       log=lambda msg: print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True))
    from specgrove.results import command_line, write_manifest

    write_manifest(out, command_line("study", args))
    print(f"wrote {report} and its figures and CSVs in {time.perf_counter() - started:.0f} s")
    return 0
