"""``specgrove bench``: every method on the same prompts and batch sizes; JSON, markdown, plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specgrove.commands import int_list
from specgrove.commands.executor_args import (
    add_decoding_arguments,
    add_pair_arguments,
    add_placement_arguments,
    check_decoding,
    check_method,
    load_pair_or_exit,
    pair_source,
    placement_from_args,
    rank_threads,
    run_torchrun_worker,
)

DEFAULT_METHODS = "ar,chain,static,sequoia,dynamic,dynamic-cost,hf-assisted"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated (default {DEFAULT_METHODS}); METHOD+BATCH_BUDGET, e.g. "
                             "dynamic+greedy-global, gives one method its own batch-budget policy")
    parser.add_argument("--prompts", required=True, help="JSON-lines file, one {\"text\": ...} per line")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma-separated max batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True, help="directory for bench.json, bench.md, speedup.png")
    add_decoding_arguments(parser)
    add_placement_arguments(parser)
    parser.set_defaults(max_new_tokens=64)


def run(args: argparse.Namespace) -> int:
    from specgrove.commands import UsageError

    from specgrove import registry
    from specgrove.executor.bench import HF_ASSISTED, PromptFileError, load_prompts, split_variant

    placement = placement_from_args(args)
    if run_torchrun_worker(args, placement):
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if placement.is_distributed and HF_ASSISTED in methods:
        raise UsageError(f"{HF_ASSISTED} runs in one process; drop it from --methods with {placement.describe()}")
    for m in methods:
        tree, split = split_variant(m, args.batch_budget)
        check_method(tree, extra=(HF_ASSISTED,))
        if split not in registry.names("batch-budget"):
            raise UsageError(f"{m}: unknown batch-budget policy {split!r}; valid: {', '.join(registry.names('batch-budget'))}")
    batch_sizes = int_list(args.batch_sizes, "--batch-sizes")
    check_decoding(args)
    if args.temperature != 0:
        raise UsageError("bench measures greedy decoding; drop --temperature")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    try:
        prompts = load_prompts(args.prompts)
    except PromptFileError as exc:
        raise UsageError(str(exc)) from None
    pair = load_pair_or_exit(args)
    if placement.is_distributed:
        import torch

        torch.set_num_threads(rank_threads(args, placement.world_size))

    from tqdm import tqdm

    from specgrove.executor.bench import aggregate, run_bench
    from specgrove.executor.bench_report import write_report

    longest = max(len(pair.tokenizer(p["text"])["input_ids"]) for p in prompts)
    limit = min(pair.target.config.max_position_embeddings, pair.draft.config.max_position_embeddings)
    if longest + args.max_new_tokens > limit:
        raise UsageError(f"a prompt of {longest} tokens + {args.max_new_tokens} new tokens exceeds the context ({limit})")
    runs_per_batch = [len([m for m in methods if m != HF_ASSISTED or b == 1]) for b in batch_sizes]
    bar = tqdm(total=sum(runs_per_batch) * args.repeats, desc="bench", file=sys.stderr)

    def progress(message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(1)

    results = run_bench(pair, methods, prompts, batch_sizes, args.max_new_tokens, args.budget, args.repeats,
                        args.batch_budget, args.trace, progress, placement, pair_source(args, placement.world_size))
    bar.close()
    rows = aggregate(results)
    config = {"pair": pair.name if pair.name == "demo" else f"{pair.target_path} + {pair.draft_path}",
              "methods": methods, "prompts": str(args.prompts), "num_prompts": len(prompts),
              "batch_sizes": batch_sizes, "max_new_tokens": args.max_new_tokens, "budget": args.budget,
              "batch_budget": args.batch_budget, "repeats": args.repeats, "seed": args.seed,
              "placement": placement.describe(), "threads_per_rank": rank_threads(args, placement.world_size)}
    out = Path(args.out)
    write_report(out, rows, config)
    print((out / "bench.md").read_text())
    return 0
