"""Arguments and checks shared by ``generate`` and ``bench`` (model pair, decoding options)."""

from __future__ import annotations

import argparse
import contextlib
import math

MAX_SEED = 2**32 - 1  # per-request generators are seeded seed * 1_000_003 + id, which must fit 64 bits
MAX_DEPTH = 1024  # a tree can be no deeper than its nodes; this only keeps a typo from a runaway


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model pair")
    group.add_argument("--pair", choices=["demo"], default=None, help="the embedded pair (default)")
    group.add_argument("--target", help="local directory of the target model (safetensors)")
    group.add_argument("--draft", help="local directory of the draft model (safetensors)")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    group.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    group.add_argument("--kernels", choices=["auto", "torch", "cupy"], default="auto",
                       help="tree layout, tree attention and KV compaction: the CuPy kernels or their "
                            "torch references (default auto: cupy on CUDA where CuPy imports, else torch)")
    group.add_argument("--gemm", choices=["auto", "torch"], default="auto",
                       help="the projections' matrix products: auto = oneDNN's packed GEMM on CPU for "
                            "large weights and several rows, F.linear otherwise; torch = F.linear always")
    group.add_argument("--cuda-graphs", choices=["auto", "on", "off"], default="auto",
                       help="replay draft rounds and plain decode steps as CUDA graphs, captured at start-up "
                            "(default auto: on CUDA in a one-process placement; on = insist, off = eager)")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=16, help="tree nodes per request per step")
    parser.add_argument("--batch-budget", default="uniform", help="uniform or greedy-global")
    parser.add_argument("--trace", help="write one JSON line per request per step to this file")


def add_tree_arguments(parser: argparse.ArgumentParser) -> None:
    """The tree knobs, named as SGLang names them; each feeds the options of the methods that
    take it (``executor.methods.KNOBS``), the methods' defaults otherwise."""
    group = parser.add_argument_group("tree shape (with --budget)")
    group.add_argument("--topk", type=int, default=None,
                       help="children per expanded node (dynamic, dynamic-cost; default 4)")
    group.add_argument("--depth", type=int, default=None,
                       help="max tree depth (dynamic, dynamic-cost: default 6; sequoia: 8; chain: its length, 4)")


def tree_knobs(args: argparse.Namespace) -> dict[str, int | None]:
    return {"topk": args.topk, "depth": args.depth}


def check_tree_knobs(args: argparse.Namespace, methods: list[str], strict: bool) -> None:
    """Knobs in range, and taken by the method (``strict``: every method given, as ``generate``
    has one) or by at least one of them (``bench`` applies a knob to the methods that take it)."""
    from specgrove.commands import UsageError
    from specgrove.executor.methods import KNOBS, knob_methods

    for knob, value in tree_knobs(args).items():
        if value is None:
            continue
        if not 1 <= value <= MAX_DEPTH:
            raise UsageError(f"--{knob} must be in 1..{MAX_DEPTH}, got {value}")
        takers = [m for m in methods if m in KNOBS[knob]]
        refused = [m for m in methods if m not in KNOBS[knob]] if strict else ([] if takers else methods)
        if refused:
            raise UsageError(f"--{knob} does not apply to method{'s' if len(refused) > 1 else ''} "
                             f"{', '.join(refused)}; it applies to {', '.join(knob_methods(knob))}")


def check_topk_vocab(args: argparse.Namespace, pair) -> None:
    """``--topk`` cannot exceed the vocabulary (a draft round takes the top k of it)."""
    from specgrove.commands import UsageError

    vocab = pair.draft.config.vocab_size
    if args.topk is not None and args.topk > vocab:
        raise UsageError(f"--topk {args.topk} exceeds the vocabulary ({vocab} tokens)")


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
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
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


def check_device(args: argparse.Namespace) -> None:
    """``--device`` names a device torch knows, of a kind specgrove runs on, present here."""
    import torch

    from specgrove.commands import UsageError

    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device {args.device!r} is not a device torch knows; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: CUDA is not available in this torch build")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"--device {args.device}: specgrove runs on cpu, cuda or cuda:N")
    check_kernels(args)


def check_kernels(args: argparse.Namespace) -> None:
    """``--kernels cupy`` only where the CuPy kernels can run (a CUDA device, CuPy importable)."""
    from specgrove.commands import UsageError
    from specgrove.kernels import _cupy

    if getattr(args, "kernels", "auto") == "cupy":
        reason = _cupy.unavailable(args.device)
        if reason:
            raise UsageError(f"--kernels cupy cannot run on --device {args.device}: {reason}")
    if getattr(args, "cuda_graphs", "auto") == "on" and not str(args.device).startswith("cuda"):
        raise UsageError(f"--cuda-graphs on needs a CUDA device, not --device {args.device}")


def probe_writable(path, flag: str, shown=None) -> None:
    """Create and remove a file in ``path`` (a directory, or where one will be made: its
    nearest existing ancestor). ``os.access`` says yes to root on /proc and the like; a real
    file says what will happen. Raises ``results.OutputPathError`` naming ``flag`` and
    ``shown`` (default ``path``)."""
    import tempfile
    from pathlib import Path

    from specgrove.results import OutputPathError

    shown = path if shown is None else shown
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise OutputPathError(f"{flag} {shown}: {where} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        raise OutputPathError(f"{flag} {shown}: cannot write in {where} ({exc.strerror or exc})") from None


def check_trace(args: argparse.Namespace) -> None:
    """``--trace`` can be written (a new file, or one to append to), checked before any model
    is loaded."""
    from pathlib import Path

    from specgrove.commands import UsageError
    from specgrove.results import OutputPathError, check_output_file

    if args.trace:
        try:
            check_output_file(args.trace, flag="--trace", overwrite=True)  # the trace is appended to
            probe_writable(Path(args.trace).parent, "--trace", args.trace)
        except OutputPathError as exc:
            raise UsageError(str(exc)) from None


@contextlib.contextmanager
def engine_errors():
    """Building an engine: caches that would not fit, or a model option the lean runtime does
    not implement, become one line."""
    from specgrove.commands import UsageError
    from specgrove.executor.memory import MemoryBudgetError
    from specgrove.executor.parallel.tensor_parallel import ShardingError
    from specgrove.executor.runtime import UnsupportedModelError
    from specgrove.executor.runtime.graphs import GraphsUnavailable
    from specgrove.kernels.backend import KernelsUnavailable

    try:
        yield
    except MemoryBudgetError as exc:
        raise UsageError(str(exc)) from None
    except ShardingError as exc:
        raise UsageError(f"--tp: {exc}") from None
    except UnsupportedModelError as exc:
        raise UsageError(f"the lean runtime cannot run this pair: {exc}") from None
    except KernelsUnavailable as exc:  # --kernels cupy for a model whose heads the kernel lacks
        raise UsageError(str(exc)) from None
    except GraphsUnavailable as exc:  # --cuda-graphs on with tensor parallelism or a draft rank
        raise UsageError(f"--cuda-graphs: {exc}") from None


def load_pair_or_exit(args: argparse.Namespace):
    """The pair named by the arguments; a bad path or pair becomes one line and exit 2."""
    import torch

    from specgrove.commands import UsageError
    from specgrove.executor.loading import PairLoadError, load_pair

    if args.pair and (args.target or args.draft):
        raise UsageError("give --pair or --target/--draft, not both")
    check_device(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return load_pair(args.target, args.draft, device=args.device)
    except PairLoadError as exc:
        raise UsageError(str(exc)) from None


def add_placement_arguments(parser: argparse.ArgumentParser, replicas: bool = False) -> None:
    """Where the models run: the words of the simulator's ``[deployment]`` section."""
    group = parser.add_argument_group("placement (one replica's ranks; see docs/parallel.md)")
    group.add_argument("--tp", type=int, default=None, help="tensor-parallel ranks of the target (default 1)")
    group.add_argument("--draft-placement", choices=["same", "separate"], default=None,
                       help="the draft on the target's ranks, or on a rank of its own (default same)")
    group.add_argument("--microbatches", type=int, default=None,
                       help="with a separate draft: micro-batches in ping-pong, 2 overlaps draft and target "
                            "(default 2), 1 does not")
    if replicas:
        group.add_argument("--replicas", type=int, default=None, help="data-parallel replicas (default 1)")
    group.add_argument("--deployment", metavar="FILE",
                       help="a scenario TOML whose [deployment] section gives the placement instead")


def placement_from_args(args: argparse.Namespace):
    """The ``Placement`` the flags (or ``--deployment FILE``) describe; bad values exit with one
    line."""
    from specgrove.commands import UsageError
    from specgrove.executor.parallel.placement import Placement, PlacementError, placement_from_deployment

    flags = {"tp": args.tp, "draft_placement": args.draft_placement, "microbatches": args.microbatches,
             "num_replicas": getattr(args, "replicas", None)}
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        if args.deployment:
            if given:
                names = ", ".join("--" + k.replace("_", "-").replace("num-", "") for k in given)
                raise UsageError(f"--deployment gives the placement; drop {names}")
            placement = placement_from_deployment(args.deployment)
        else:
            placement = Placement(**given)
    except PlacementError as exc:
        raise UsageError(str(exc)) from None
    if placement.num_replicas > 1 and not hasattr(args, "replicas"):
        raise UsageError(f"{args.deployment}: deployment.num_replicas = {placement.num_replicas}: "
                         "only `serve` runs several replicas")
    return placement


def _cpu_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def rank_threads(args: argparse.Namespace, world: int) -> int:
    """torch threads per rank: ``--threads``, else this machine's cores shared by the ranks
    (processes x threads must not exceed the cores: oversubscribed torch crawls)."""
    return args.threads or max(1, _cpu_cores() // world)


def pair_source(args: argparse.Namespace, world: int = 1):
    """What the other ranks of a replica load: the same pair, device and thread share."""
    from specgrove.executor.parallel.placement import PairSource

    return PairSource(args.target, args.draft, args.device, rank_threads(args, world))


def run_torchrun_worker(args: argparse.Namespace, placement) -> bool:
    """Under ``torchrun``, ranks other than 0 serve rank 0 and return True; rank 0 (and a run
    outside torchrun) returns False and goes on with the command."""
    from specgrove.executor.parallel import launch

    if not launch.under_torchrun() or launch.torchrun_rank() == 0:
        return False
    if launch.torchrun_world() != placement.world_size:
        from specgrove.commands import UsageError

        raise UsageError(f"torchrun started {launch.torchrun_world()} ranks; the placement "
                         f"({placement.describe()}) needs {placement.world_size}")
    launch.worker_main(launch.torchrun_rank(), placement.world_size, placement, args.device,
                       rank_threads(args, placement.world_size), 60.0)
    return True
