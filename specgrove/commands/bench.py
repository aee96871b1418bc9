"""``specgrove bench``: every method on the same prompts and batch sizes; JSON, markdown, plot."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from specgrove.commands import int_list
from specgrove.commands.executor_args import (
    _cpu_cores,
    add_decoding_arguments,
    add_pair_arguments,
    add_placement_arguments,
    add_tree_arguments,
    check_decoding,
    check_device,
    check_method,
    check_topk_vocab,
    check_trace,
    check_tree_knobs,
    engine_errors,
    load_pair_or_exit,
    probe_writable,
    pair_source,
    placement_from_args,
    rank_threads,
    run_torchrun_worker,
    tree_knobs,
)

DEFAULT_METHODS = "ar,chain,static,sequoia,lookup,dynamic,dynamic-lookup,dynamic-cost,hf-assisted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated (default {DEFAULT_METHODS}); METHOD+BATCH_BUDGET, e.g. "
                             "dynamic+greedy-global, gives one method its own batch-budget policy")
    parser.add_argument("--prompts", required=True, help="JSON-lines file, one {\"text\": ...} per line")
    parser.add_argument("--batch-sizes", default="1,4,16",
                        help="comma-separated max batch sizes (each capped at the number of prompts)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats per method (default 3; 1 is marked 'single run')")
    parser.add_argument("--out", required=True,
                        help="directory for bench.json, bench.md, speedup.png and manifest.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another run already in --out")
    add_decoding_arguments(parser)
    add_tree_arguments(parser)
    add_placement_arguments(parser)
    parser.set_defaults(max_new_tokens=64)


def warn(message: str) -> None:
    print(f"specgrove bench: warning: {message}", file=sys.stderr)


def cap_batch_sizes(batch_sizes: list[int], num_prompts: int) -> list[int]:
    """Each batch size at most the number of prompts (a larger batch is never filled and only
    allocates cache), duplicates dropped, order kept; one line on stderr when any is capped."""
    capped = list(dict.fromkeys(min(b, num_prompts) for b in batch_sizes))
    if any(b > num_prompts for b in batch_sizes):
        big = ", ".join(str(b) for b in batch_sizes if b > num_prompts)
        print(f"specgrove bench: batch size {big} capped at {num_prompts}, the number of prompts; "
              f"running batch sizes {','.join(map(str, capped))}", file=sys.stderr)
    return capped


def host_load() -> tuple[float, int] | None:
    """(1-minute load average, usable cores), or None where the OS has no load average."""
    try:
        return os.getloadavg()[0], _cpu_cores()
    except (AttributeError, OSError):
        return None


def run(args: argparse.Namespace) -> int:
    from specgrove.commands import UsageError

    from specgrove import registry
    from specgrove.executor.bench import HF_ASSISTED, PromptFileError, load_prompts, split_variant
    from specgrove.executor.bench_report import BENCH_FILES
    from specgrove.results import OutputPathError, check_out_dir, command_line

    placement = placement_from_args(args)
    if run_torchrun_worker(args, placement):
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError(f"--methods lists no method, got {args.methods!r}")
    if len(set(methods)) < len(methods):
        repeated = next(m for m in methods if methods.count(m) > 1)
        raise UsageError(f"--methods lists {repeated!r} twice")
    if placement.is_distributed and HF_ASSISTED in methods:
        raise UsageError(f"{HF_ASSISTED} runs in one process; drop it from --methods with {placement.describe()}")
    for m in methods:
        tree, split = split_variant(m, args.batch_budget)
        check_method(tree, extra=(HF_ASSISTED,))
        if split not in registry.names("batch-budget"):
            raise UsageError(f"{m}: unknown batch-budget policy {split!r}; valid: {', '.join(registry.names('batch-budget'))}")
    batch_sizes = int_list(args.batch_sizes, "--batch-sizes")
    check_decoding(args)
    trees = [split_variant(m, args.batch_budget)[0] for m in methods if m != HF_ASSISTED]
    check_tree_knobs(args, trees, strict=False)
    if args.temperature != 0:
        raise UsageError("bench measures greedy decoding; drop --temperature")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    check_device(args)
    out = Path(args.out)
    try:
        check_out_dir(out, flag="--out", marker=BENCH_FILES, overwrite=args.overwrite)
        probe_writable(out, "--out")
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None
    check_trace(args)
    try:
        prompts = load_prompts(args.prompts)
    except PromptFileError as exc:
        raise UsageError(str(exc)) from None
    batch_sizes = cap_batch_sizes(batch_sizes, len(prompts))
    pair = load_pair_or_exit(args)
    check_topk_vocab(args, pair)
    if placement.is_distributed:
        import torch

        torch.set_num_threads(rank_threads(args, placement.world_size))

    from tqdm import tqdm

    from specgrove.executor.bench import aggregate, run_bench, spread_warnings
    from specgrove.executor.bench_report import write_report
    from specgrove.executor.engine import EngineConfig, cache_headroom
    from specgrove.executor.memory import check_kv_fits

    longest = max(len(pair.tokenizer(p["text"])["input_ids"]) for p in prompts)
    limit = min(pair.target.config.max_position_embeddings, pair.draft.config.max_position_embeddings)
    if longest + args.max_new_tokens > limit:
        raise UsageError(f"a prompt of {longest} tokens + {args.max_new_tokens} new tokens exceeds the context ({limit})")
    if not (placement.is_distributed and args.device.startswith("cuda")):
        # The largest batch's caches, before any work (on one host's memory: ranks on CPU share
        # it; ranks on several GPUs each hold a shard, and build their own).
        with engine_errors():
            splits = {split_variant(m, args.batch_budget)[1] for m in methods if m != HF_ASSISTED} or {"uniform"}
            biggest = max(batch_sizes)
            headroom = max(cache_headroom(EngineConfig(budget=args.budget, batch_budget=s, max_batch=biggest))
                           for s in splits)
            check_kv_fits(pair.target, pair.draft, biggest, headroom)
    load = host_load()  # at the start of the measurements
    notes = []
    if load is not None and load[0] > load[1] / 2:
        notes.append(f"the 1-minute load average was {load[0]:.2f} at the start, over half of the "
                     f"{load[1]} cores: other work shares this machine and the timings are noisy")
        warn(notes[-1])
    runs_per_batch = [len([m for m in methods if m != HF_ASSISTED or b == 1]) for b in batch_sizes]
    bar = tqdm(total=sum(runs_per_batch) * args.repeats, desc="bench", file=sys.stderr)

    def progress(message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(1)

    with engine_errors():
        results = run_bench(pair, methods, prompts, batch_sizes, args.max_new_tokens, args.budget, args.repeats,
                            args.batch_budget, args.trace, progress, placement, pair_source(args, placement.world_size),
                            knobs=tree_knobs(args), kernels=args.kernels, gemm=args.gemm,
                            cuda_graphs=args.cuda_graphs)
    bar.close()
    rows = aggregate(results)
    for message in spread_warnings(rows):
        notes.append(message)
        warn(message)
    config = {"pair": pair.name if pair.name == "demo" else f"{pair.target_path} + {pair.draft_path}",
              "methods": methods, "prompts": str(args.prompts), "num_prompts": len(prompts),
              "batch_sizes": batch_sizes, "max_new_tokens": args.max_new_tokens, "budget": args.budget,
              "batch_budget": args.batch_budget, "topk": args.topk, "depth": args.depth,
              "repeats": args.repeats, "seed": args.seed, "kernels": args.kernels, "gemm": args.gemm,
              "cuda_graphs": args.cuda_graphs,
              "placement": placement.describe(), "threads_per_rank": rank_threads(args, placement.world_size),
              "load_average_1m": None if load is None else round(load[0], 2),
              "cores": None if load is None else load[1], "notes": notes}
    write_report(out, rows, config, command_line("bench", args))
    print((out / "bench.md").read_text())
    return 0
