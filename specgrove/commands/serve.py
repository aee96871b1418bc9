"""``specgrove serve``: an OpenAI-compatible HTTP server over the speculative engine."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import threading

from specgrove.commands import UsageError
from specgrove.commands.executor_args import add_pair_arguments, check_method, load_pair_or_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pair_arguments(parser)
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


def _check(args: argparse.Namespace) -> None:
    from specgrove import registry

    check_method(args.method)
    for name, value, low in (("--max-batch", args.max_batch, 1), ("--max-queue", args.max_queue, 1),
                             ("--budget", args.budget, 0)):
        if value < low:
            raise UsageError(f"{name} must be >= {low}, got {value}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if not args.shutdown_timeout >= 0:
        raise UsageError(f"--shutdown-timeout must be >= 0, got {args.shutdown_timeout}")
    for kind, flag, value in (("scheduler", "--scheduler", args.scheduler), ("batch-budget", "--batch-budget", args.batch_budget)):
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


def run(args: argparse.Namespace) -> int:
    _check(args)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError("serve needs the 'serve' extra: pip install -e '.[executor,serve]'") from None
    pair = load_pair_or_exit(args)

    from specgrove.serve.server import ServeConfig, build_server
    from specgrove.trace import TraceWriter

    config = ServeConfig(method=args.method, budget=args.budget, batch_budget=args.batch_budget,
                         max_batch=args.max_batch, scheduler=args.scheduler, max_queue=args.max_queue,
                         seed=args.seed)
    with TraceWriter(args.trace, keep=False, method=args.method, max_batch=args.max_batch) as trace:
        app, runner = build_server(pair, config, on_trace=trace.record if args.trace else None)
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
        runner.run()  # the engine loop, on the main thread (see specgrove.serve.runner)
        server.should_exit = True  # already so, unless the engine failed
        thread.join(args.shutdown_timeout + 5)
    if runner.error:
        raise UsageError(f"the engine failed: {runner.error}")
    return 0
