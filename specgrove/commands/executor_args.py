"""Arguments and checks shared by ``generate`` and ``bench`` (model pair, decoding options)."""

from __future__ import annotations

import argparse
import math


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model pair")
    group.add_argument("--pair", choices=["demo"], default=None, help="the embedded pair (default)")
    group.add_argument("--target", help="local directory of the target model (safetensors)")
    group.add_argument("--draft", help="local directory of the draft model (safetensors)")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=16, help="tree nodes per request per step")
    parser.add_argument("--batch-budget", default="uniform", help="uniform or greedy-global")
    parser.add_argument("--trace", help="write one JSON line per request per step to this file")


def check_decoding(args: argparse.Namespace) -> None:
    from specgrove import registry
    from specgrove.commands import UsageError

    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0 and finite, got {args.temperature}")
    if not 0.0 < args.top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.budget < 0:
        raise UsageError(f"--budget must be >= 0, got {args.budget}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    try:
        registry.get("batch-budget", args.batch_budget)
    except registry.UnknownPolicyError as exc:
        raise UsageError(str(exc)) from None


def check_method(name: str, extra: tuple[str, ...] = ()) -> None:
    from specgrove import registry
    from specgrove.commands import UsageError

    valid = registry.names("tree") + list(extra)
    if name not in valid:
        raise UsageError(f"unknown method {name!r}; valid: {', '.join(valid)}")


def load_pair_or_exit(args: argparse.Namespace):
    """The pair named by the arguments; a bad path or pair becomes one line and exit 2."""
    import torch

    from specgrove.commands import UsageError
    from specgrove.executor.loading import PairLoadError, load_pair

    if args.pair and (args.target or args.draft):
        raise UsageError("give --pair or --target/--draft, not both")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available in this torch build")
    try:
        return load_pair(args.target, args.draft, device=args.device)
    except PairLoadError as exc:
        raise UsageError(str(exc)) from None
