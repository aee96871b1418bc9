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
    add_tree_arguments,
    check_decoding,
    check_device,
    check_method,
    check_topk_vocab,
    check_trace,
    check_tree_knobs,
    engine_errors,
    load_pair_or_exit,
    pair_source,
    placement_from_args,
    rank_threads,
    run_torchrun_worker,
    tree_knobs,
)

SHOW_TREE_STEPS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
    parser.add_argument("--method", default="dynamic", help="tree policy (see `specgrove policies`)")
    parser.add_argument("--prompt", required=True, help="the prompt text")
    add_decoding_arguments(parser)
    add_tree_arguments(parser)
    add_placement_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    parser.add_argument("--show-tree", type=int, nargs="?", const=SHOW_TREE_STEPS, default=None, metavar="STEPS",
                        help=f"after the text, print the first STEPS steps' trees (default {SHOW_TREE_STEPS}), "
                             "accepted nodes marked")


def run(args: argparse.Namespace) -> int:
    from specgrove.commands import UsageError

    placement = placement_from_args(args)
    if run_torchrun_worker(args, placement):
        return 0
    check_method(args.method)
    check_decoding(args)
    check_tree_knobs(args, [args.method], strict=True)
    check_device(args)
    if not args.prompt.strip():
        raise UsageError("--prompt is empty")
    if args.show_tree is not None:
        if args.show_tree < 1:
            raise UsageError(f"--show-tree must be >= 1 steps, got {args.show_tree}")
        if args.json:
            raise UsageError("--show-tree prints text; drop --json")
        if placement.is_separate:
            raise UsageError("--show-tree needs the draft in the target's process; drop --draft-placement separate")
    check_trace(args)
    pair = load_pair_or_exit(args)
    check_topk_vocab(args, pair)
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
                          eos_token_id=pair.tokenizer.eos_token_id, kernels=args.kernels,
                          gemm=args.gemm, cuda_graphs=args.cuda_graphs)
    options = method_options(args.method, pair, args.prompt, greedy=args.temperature == 0, knobs=tree_knobs(args))
    with TraceWriter(args.trace) as trace:
        with engine_errors():
            try:
                replica = open_replica(pair, pair_source(args, placement.world_size), placement, config, options,
                                       on_trace=trace.record, threads=rank_threads(args, placement.world_size))
            except ShardingError as exc:
                raise UsageError(f"--tp {placement.tp}: {exc}") from None
        engine = replica.engine
        shown_trees = _capture_trees(engine, args.show_tree) if args.show_tree else None
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
        if shown_trees is not None:
            sys.stdout.write("\n" + _tree_outlines(shown_trees, trace.steps, pair.tokenizer) + "\n")
            sys.stdout.flush()
        print(f"\n\n[{args.method}] {stats['tokens']} tokens, {stats['steps']} steps, tau {stats['tau']:.2f}, "
              f"{stats['tokens_per_s']:.1f} tokens/s, draft {stats['draft_ms']:.0f} ms, "
              f"verify {stats['verify_ms']:.0f} ms" + _spec_line(stats), file=sys.stderr)
    return 0


def _spec_line(stats: dict) -> str:
    """Accepted nodes per step and the acceptance rate by draft depth, where a tree was drafted."""
    if not stats.get("acceptance_by_depth"):
        return ""
    depths = " ".join(f"{a:.2f}" for a in stats["acceptance_by_depth"][:6])
    return (f"; accepted {stats['mean_accepted_len']:.2f} nodes/step, "
            f"{100 * (stats['draft_acceptance_rate'] or 0):.0f}% of drafted; by depth {depths}")


def _capture_trees(engine, steps: int) -> list[tuple[int, object]]:
    """Keep the (root token, tree) of the first ``steps`` decoding steps of the one request:
    the engine's ``speculate`` is wrapped on this instance (the trace has each tree's parents
    and accepted path, not its tokens)."""
    captured: list[tuple[int, object]] = []
    speculate = engine.speculate

    def keep(seqs):
        spec = speculate(seqs)
        if len(captured) < steps and seqs:
            captured.append((seqs[0].root, spec.trees[0]))
        return spec

    engine.speculate = keep
    return captured


def _tree_outlines(captured, steps, tokenizer) -> str:
    """Each captured step's tree, accepted nodes marked from the step's trace record."""
    from specgrove.tree_view import UNICODE, render_tree

    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "".join(UNICODE.values()).encode(encoding)
        ascii_only = False
    except (UnicodeEncodeError, LookupError):
        ascii_only = True
    blocks = []
    for i, ((root, tree), step) in enumerate(zip(captured, steps)):
        share = step.requests[0]
        blocks.append(f"step {i}: {len(tree)} nodes, {share.accepted_len} accepted, {share.emitted} emitted\n"
                      + render_tree(tree, lambda t: tokenizer.decode([t]), share.accepted_nodes,
                                    root=tokenizer.decode([root]), ascii_only=ascii_only))
    return "\n\n".join(blocks) if blocks else "(no decoding step: the first token came from the prefill)"
