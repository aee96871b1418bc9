"""The front-end's side of a replica's process life: start it (spawn, two one-way pipes), wait
until every replica has loaded, say why one exited, and stop them all. ``ReplicaPool``
(``specgrove.serve.replicas``) routes over the replicas started here; the child's side is
``specgrove.serve.replica_process``."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from specgrove.executor.parallel.placement import PairSource
from specgrove.serve.replica_process import replica_main

log = logging.getLogger("specgrove.serve")

STOP_TIMEOUT_S = 10.0  # a stopped replica's time to exit before it is terminated


class ReplicaStartError(RuntimeError):
    """A replica that could not load; the message names it and says why."""


@dataclass
class _Replica:
    id: int
    process: multiprocessing.process.BaseProcess
    commands: Connection  # the front-end sends
    events: Connection  # the front-end receives
    alive: bool = True
    running: int = 0
    waiting: int = 0


def start_replica(i: int, source: PairSource, config, placement) -> _Replica:
    """Spawn replica ``i``, which loads the pair itself; it says ready (or failed) on its events pipe."""
    ctx = multiprocessing.get_context("spawn")
    cmd_r, cmd_w = ctx.Pipe(duplex=False)
    ev_r, ev_w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=replica_main, name=f"specgrove-replica-{i}",
                       args=(i, source, config, placement, cmd_r, ev_w))
    proc.start()
    cmd_r.close()  # the child's ends: closed here, so a dead child reads as EOF
    ev_w.close()
    return _Replica(i, proc, cmd_w, ev_r)


def await_ready(replicas: list[_Replica], timeout_s: float | None) -> dict:
    """Wait until every replica has loaded; returns the ready message's info (``max_positions``,
    ``eos_token_id``: the same pair in each). ``ReplicaStartError`` if one fails, exits or
    ``timeout_s`` passes."""
    pending = {r.id: r for r in replicas}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    info: dict = {}
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = wait([r.events for r in pending.values()] + [r.process.sentinel for r in pending.values()], left)
        if not ready:
            raise ReplicaStartError(f"replica {min(pending)} did not load within {timeout_s:g} s")
        for rep in list(pending.values()):
            if rep.events in ready or rep.process.sentinel in ready:
                try:
                    msg = rep.events.recv()
                except (EOFError, OSError):
                    raise ReplicaStartError(f"replica {rep.id} exited while loading "
                                            f"({exit_reason(rep.process)})") from None
                if msg[0] == "failed":
                    raise ReplicaStartError(f"replica {rep.id} failed to start: {msg[1]}")
                info = msg[1]
                del pending[rep.id]
    return info


def _reap(process, timeout_s: float = 2.0) -> None:
    """Wait (bounded) for a process whose pipes closed to be reapable: its fds close a moment
    before the kernel reports its exit, so one ``join`` can come back too early."""
    deadline = time.monotonic() + timeout_s
    while process.exitcode is None and time.monotonic() < deadline:
        process.join(0.01)


def exit_reason(process) -> str:
    _reap(process)
    code = process.exitcode
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def stop_replicas(replicas: list[_Replica], timeout_s: float = STOP_TIMEOUT_S, quiet: bool = False) -> None:
    """Stop every replica: ask, wait up to ``timeout_s``, then terminate; join them all.
    Idempotent."""
    for rep in replicas:
        if rep.process.is_alive():
            try:
                rep.commands.send(("stop",))
            except OSError:
                pass
    deadline = time.monotonic() + timeout_s
    for rep in replicas:
        rep.process.join(max(0.0, deadline - time.monotonic()))
        if rep.process.is_alive() and not quiet:
            log.warning("replica %d did not stop within %g s; terminating it", rep.id, timeout_s)
        if rep.process.is_alive():
            rep.process.terminate()
            rep.process.join(5)
        if rep.process.is_alive():
            rep.process.kill()
            rep.process.join()
        rep.alive = False
        for conn in (rep.commands, rep.events):
            conn.close()
