"""``specgrove generate``: stream one prompt's continuation with speculative decoding."""

from __future__ import annotations

import argparse
import json
import sys
import time

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
    parser.add_argument("--method", default="dynamic", help="tree policy (see `specgrove policies`)")
    parser.add_argument("--prompt", required=True, help="the prompt text")
    add_decoding_arguments(parser)
    add_placement_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")


def run(args: argparse.Namespace) -> int:
    from specgrove.commands import UsageError

    placement = placement_from_args(args)
    if run_torchrun_worker(args, placement):
        return 0
    check_method(args.method)
    check_decoding(args)
    if not args.prompt.strip():
        raise UsageError("--prompt is empty")
    pair = load_pair_or_exit(args)
    if placement.is_distributed:
        import torch

        torch.set_num_threads(rank_threads(args, placement.world_size))

    from specgrove.executor.engine import EngineConfig
    from specgrove.executor.parallel.replica import open_replica
    from specgrove.executor.parallel.tensor_parallel import ShardingError
    from specgrove.executor.sampling import SamplingParams
    from specgrove.executor.methods import method_options
    from specgrove.trace import TraceWriter, summarize

    ids = pair.tokenizer(args.prompt)["input_ids"]
    config = EngineConfig(method=args.method, budget=args.budget, batch_budget=args.batch_budget, max_batch=1,
                          sampling=SamplingParams(args.temperature, args.top_p), seed=args.seed,
                          eos_token_id=pair.tokenizer.eos_token_id)
    options = method_options(args.method, pair, args.prompt, greedy=args.temperature == 0)
    with TraceWriter(args.trace) as trace:
        try:
            replica = open_replica(pair, pair_source(args, placement.world_size), placement, config, options,
                                   on_trace=trace.record, threads=rank_threads(args, placement.world_size))
        except ShardingError as exc:
            raise UsageError(f"--tp {placement.tp}: {exc}") from None
        engine = replica.engine
        try:
            engine.add_request(ids, args.max_new_tokens)
        except ValueError as exc:
            replica.close()
            raise UsageError(str(exc)) from None
        started = time.perf_counter()
        tokens: list[int] = []
        shown = ""
        if not args.json:
            sys.stdout.write(args.prompt)
        while engine.has_work:
            for _, new in engine.step():
                tokens += new
            if not args.json:
                # Decode the whole continuation and print what is new: byte-level BPE tokens
                # may not be valid text on their own.
                text = pair.tokenizer.decode(tokens)
                sys.stdout.write(text[len(shown):])
                sys.stdout.flush()
                shown = text
        wall = time.perf_counter() - started
        replica.close()
    stats = summarize(trace.steps, len(tokens), wall)
    if args.json:
        print(json.dumps({"text": pair.tokenizer.decode(tokens), "token_ids": tokens,
                          "method": args.method, "stats": stats}))
    else:
        print(f"\n\n[{args.method}] {stats['tokens']} tokens, {stats['steps']} steps, tau {stats['tau']:.2f}, "
              f"{stats['tokens_per_s']:.1f} tokens/s, draft {stats['draft_ms']:.0f} ms, "
              f"verify {stats['verify_ms']:.0f} ms", file=sys.stderr)
    return 0
