"""``specgrove serve``: an OpenAI-compatible HTTP server over the speculative engine."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import threading
from pathlib import Path

from specgrove.commands import UsageError
from specgrove.commands.executor_args import (add_pair_arguments, add_placement_arguments, check_kernels, check_method,
                                              engine_errors, load_pair_or_exit, pair_source, placement_from_args,
                                              rank_threads, run_torchrun_worker)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
    add_placement_arguments(parser, replicas=True)
    parser.add_argument("--router", default="round-robin",
                        help="router policy that picks each request's replica (default round-robin)")
    parser.add_argument("--method", default="dynamic-cost", help="tree policy (default dynamic-cost)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-batch", type=int, default=16, help="requests decoded together (default 16)")
    parser.add_argument("--scheduler", default="fcfs", help="admission order: fcfs, sjf or edf (default fcfs)")
    parser.add_argument("--max-queue", type=int, default=256, help="waiting requests before 429 (default 256)")
    parser.add_argument("--budget", type=int, default=16, help="tree nodes per request per step (default 16)")
    parser.add_argument("--batch-budget", default="uniform", help="uniform or greedy-global (default uniform)")
    parser.add_argument("--seed", type=int, default=0, help="seed of requests that bring none (default 0)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds running requests get to finish after SIGTERM (default 30)")
    parser.add_argument("--trace", help="append one JSON line per request per step to this file")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _check(args: argparse.Namespace):
    """Every flag, before anything loads; returns the placement."""
    from specgrove import registry

    check_method(args.method)
    if args.replicas is not None and args.replicas < 1:
        raise UsageError(f"--replicas must be >= 1, got {args.replicas}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    placement = placement_from_args(args)
    for name, value, low in (("--max-batch", args.max_batch, 1), ("--max-queue", args.max_queue, 1),
                             ("--budget", args.budget, 0)):
        if value < low:
            raise UsageError(f"{name} must be >= {low}, got {value}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if not args.shutdown_timeout >= 0:
        raise UsageError(f"--shutdown-timeout must be >= 0, got {args.shutdown_timeout}")
    for kind, flag, value in (("scheduler", "--scheduler", args.scheduler), ("batch-budget", "--batch-budget", args.batch_budget),
                              ("router", "--router", args.router)):
        if value not in registry.names(kind):
            raise UsageError(f"{flag}: unknown {kind} policy {value!r}; valid: {', '.join(registry.names(kind))}")
    # Fail now, not after loading the models, if the address cannot be used.
    try:
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    return placement


def _replica_source(args: argparse.Namespace, placement):
    """For replicas: what each loads (``PairSource``), and the front-end's model name and
    tokenizer (the front-end loads no model; the replicas check the pair as they load it)."""
    import torch

    from specgrove.executor import loading
    from specgrove.executor.parallel.placement import PairSource

    if args.pair and (args.target or args.draft):
        raise UsageError("give --pair or --target/--draft, not both")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available in this torch build")
    check_kernels(args)
    try:
        if args.target is None and args.draft is None:
            target, name = loading.demo_paths()[0], "demo"
            if not (target / "config.json").exists():
                raise loading.PairLoadError(f"the demo pair is missing from {loading.DEMO_DIR}; "
                                            "train it with scripts/train_demo_pair.py")
        elif args.target is None or args.draft is None:
            raise loading.PairLoadError("give both --target and --draft, or neither for the demo pair")
        else:
            target, name = Path(args.target), Path(args.target).name
            loading._check_dir(target, "target")
            loading._check_dir(Path(args.draft), "draft")
        tokenizer = loading._load_tokenizer(target, "target")
    except loading.PairLoadError as exc:
        raise UsageError(str(exc)) from None
    # Each replica gets its share of the cores unless told (oversubscribed torch crawls).
    threads = rank_threads(args, placement.num_replicas * placement.world_size) if args.device == "cpu" else args.threads
    source = PairSource(str(args.target) if args.target else None, str(args.draft) if args.draft else None,
                        args.device, threads)
    return source, name, tokenizer


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    placement = _check(args)
    if run_torchrun_worker(args, placement):
        return 0
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError("serve needs the 'serve' extra: pip install -e '.[executor,serve]'") from None

    from specgrove.serve.server import ServeConfig, build_replicated_server, build_server
    from specgrove.trace import TraceWriter

    config = ServeConfig(method=args.method, budget=args.budget, batch_budget=args.batch_budget,
                         max_batch=args.max_batch, scheduler=args.scheduler, max_queue=args.max_queue,
                         seed=args.seed, kernels=args.kernels, gemm=args.gemm,
                         cuda_graphs=args.cuda_graphs)
    if placement.num_replicas == 1:
        pair = load_pair_or_exit(args)
        if placement.is_distributed:
            import torch

            torch.set_num_threads(rank_threads(args, placement.world_size))
    else:
        source, name, tokenizer = _replica_source(args, placement)
    with TraceWriter(args.trace, keep=False, method=args.method, max_batch=args.max_batch) as trace:
        on_trace = trace.record if args.trace else None
        if placement.num_replicas == 1:
            with engine_errors():  # caches that would not fit, an unsupported option: one line
                app, runner = build_server(pair, config, on_trace=on_trace, placement=placement,
                                           source=pair_source(args, placement.world_size))
        else:
            from specgrove.serve.replicas import ReplicaStartError

            import torch

            torch.set_num_threads(1)  # the front-end tokenizes and routes; the replicas run the models
            # SIGTERM while the replicas load: stop them too (launch cleans up on any exception).
            previous = signal.signal(signal.SIGTERM, _interrupt)
            try:  # returns once every replica has loaded: only then does the server listen
                app, runner = build_replicated_server(source, tokenizer, name, config, placement, args.router,
                                                      on_trace=on_trace)
            except ReplicaStartError as exc:
                raise UsageError(str(exc)) from None
            finally:
                signal.signal(signal.SIGTERM, previous)
        try:
            _serve(args, app, runner, uvicorn)
        finally:
            shutdown = getattr(runner, "shutdown", None)  # the replicas: stopped and joined
            if shutdown is not None:
                shutdown()
    if runner.error:
        raise UsageError(f"the engine failed: {runner.error}")
    return 0


def _serve(args: argparse.Namespace, app, runner, uvicorn) -> None:
    """uvicorn on a thread, the engine loop (``runner.run``) on this one, until SIGTERM drains."""
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                           timeout_graceful_shutdown=args.shutdown_timeout, access_log=False))

    def http() -> None:
        try:
            server.run()  # off the main thread, uvicorn leaves signals to us
        finally:
            runner.request_stop()  # also when the server could not start

    def on_signal(signum, _frame) -> None:
        # SIGTERM or Ctrl-C: stop admitting (uvicorn closes the listener), let the running
        # requests finish within --shutdown-timeout; a second signal forces the exit.
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True
        runner.wake()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    thread = threading.Thread(target=http, name="specgrove-http", daemon=True)
    thread.start()
    runner.run()  # the engine loop (or the replicas' front-end), on the main thread
    server.should_exit = True  # already so, unless the engine failed
    thread.join(args.shutdown_timeout + 5)
