"""Data-parallel replicas behind a router policy, for ``specgrove serve --replicas N``.

    HTTP (event loop) ──inbox──> front-end loop (main thread) ──pipe──> replica 0 (process) ...
                                  route: router.route(Request, loads)    engine loop: admit, decode
                     <──stream── tokens, Finish, step records <──pipe──  tokens, finishes, records

``ReplicaPool`` offers the calls the app makes of an ``EngineRunner`` (submit, cancel,
num_waiting, num_running, is_full, request_stop, run, wake, error, metrics). Each replica is a
child process (multiprocessing, "spawn") that loads the pair itself, builds its engine with
``make_engine`` and runs an engine loop like ``EngineRunner``'s: it applies add/cancel commands
between steps and sends back, per half-step, each request's new token ids, the requests that
finished (reason and times), the engine's trace records (for the front-end's metrics and
``--trace``) and its running/waiting counts. Commands and events travel on two one-way
``multiprocessing`` pipes per replica; a reader thread in the replica drains its command pipe,
so neither side can block the other.

The front-end routes each request with the registered router policy over the live replicas:
the ``ReplicaLoad`` it builds holds its own count of each replica's requests and tokens still
to generate, and tau and the step time of the replica's recent steps (``LoadBook``). Its loop
waits (``multiprocessing.connection.wait``) on the replicas' event pipes, their process
sentinels and a wake pipe; it never polls.

Faults: a replica whose process dies, or whose engine raises, is marked dead (logged with its
id, ``specgrove_replica_failures``); each of its requests is routed again to a live replica
(``specgrove_request_retries``) as a continuation: the original prompt plus the tokens already
streamed, for the tokens that remain, with the same sampling. A greedy request's output is then
the same as without the failure, and its client sees one stream. With no replica left, open
requests fail and ``error`` is set (the app answers 503, ``/health`` too).

Starting the replicas' processes, waiting until they have loaded, their exit reasons and
stopping them: ``specgrove.serve.replica_lifecycle``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from specgrove.executor.parallel.placement import PairSource  # noqa: F401 (re-exported)
from specgrove.serve.load_book import LoadBook, NoReplicaError  # noqa: F401 (re-exported)
from specgrove.serve.metrics import ServeMetrics
from specgrove.serve.replica_lifecycle import (  # noqa: F401 (ReplicaStartError re-exported)
    STOP_TIMEOUT_S, ReplicaStartError, _Replica, await_ready, exit_reason, start_replica, stop_replicas)
from specgrove.serve.runner import Finish, LoopHost, Stream, Submission
from specgrove.types import Request

log = logging.getLogger("specgrove.serve")

MAX_RETRIES = 3  # re-routings of one request; a request that outlives more replicas fails


# ---- the front-end ----------------------------------------------------------------------------

@dataclass(eq=False)
class _Tracked:
    """One request as the front-end follows it, over however many replicas serve it."""

    key: int
    sub: Submission
    stream: Stream
    arrival: float  # wall clock, when it reached the front-end
    replica: int | None = None
    tokens: list[int] = field(default_factory=list)  # streamed to the client so far
    started: bool = False  # has its current replica admitted it
    cancelled: bool = False
    retries: int = 0
    events: int = 0  # token-bearing forwards on the current replica
    events_before: int = 0  # on earlier replicas
    admitted_time: float | None = None  # of its first admission
    first_token_time: float | None = None


class ReplicaPool(LoopHost):
    """``num_replicas`` engines in child processes behind a router; the app's runner."""

    thread_name = "specgrove-replicas"

    def __init__(self, source: PairSource, config, placement, router: str, metrics: ServeMetrics,
                 on_trace=None) -> None:
        import numpy as np

        from specgrove import registry

        self.source, self.config, self.placement = source, config, placement
        self.metrics, self.on_trace = metrics, on_trace
        self.max_queue = config.max_queue
        self.router = registry.create("router", router, rng=np.random.default_rng(config.seed))
        self.num_replicas = placement.num_replicas
        self.book = LoadBook(self.num_replicas)
        self.error: str | None = None
        self.max_positions = 0
        self.eos_token_id: int | None = None
        self._replicas: list[_Replica] = []
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._next_key = 0
        self._waiting = 0  # submitted, not (or no longer) admitted by a replica
        self._running = 0
        self._reqs: dict[int, _Tracked] = {}
        self._stopping = False
        self._accepting = True  # until the front-end loop ends
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # The wake pipe stays open for the process's life: a signal handler may still write.
        for i in range(self.num_replicas):
            metrics.replica_requests.labels(replica=str(i))  # each replica's series, from 0

    # ---- start-up ----------------------------------------------------------------------
    def launch(self, timeout_s: float | None = None) -> None:
        """Start every replica and wait until each has loaded; ``ReplicaStartError`` (the
        others stopped) if one fails or ``timeout_s`` passes."""
        try:
            for i in range(self.num_replicas):
                self._replicas.append(start_replica(i, self.source, self.config, self.placement))
            info = await_ready(self._replicas, timeout_s)
            if info:
                self.max_positions, self.eos_token_id = info["max_positions"], info["eos_token_id"]
        except BaseException:
            self.shutdown(0, quiet=True)
            raise
        log.info("%d replicas ready (router %s)", self.num_replicas, type(self.router).__name__)

    # ---- the app's calls (event loop thread) --------------------------------------------
    @property
    def num_waiting(self) -> int:
        return self._waiting

    @property
    def num_running(self) -> int:
        return self._running

    def is_full(self) -> bool:
        return self.num_waiting >= self.max_queue

    def submit(self, sub: Submission) -> Stream:
        stream = Stream(asyncio.get_running_loop())
        now = time.time()
        with self._lock:
            stream.request_id = key = self._next_key
            self._next_key += 1
            accepted = self._accepting
            if accepted:
                self._waiting += 1
                self._inbox.put(("add", _Tracked(key, sub, stream, now)))
        if accepted:
            self.wake()
        else:  # the front-end loop has ended (no replica left, or stopped)
            why = self.error or "the server is stopping"
            stream.events.put_nowait(Finish("error", now, None, None, now, 0, 0, why))
        return stream

    def cancel(self, stream: Stream) -> None:
        self._inbox.put(("cancel", stream.request_id))
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")  # async-signal-safe: serve calls it from a handler
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake is pending anyway) or closed

    def request_stop(self) -> None:
        """Finish the open requests, then stop the replicas and return from ``run``."""
        self._stopping = True
        self.wake()

    def replica_status(self) -> list[dict]:
        return [{"id": r.id, "pid": r.process.pid, "alive": r.alive, "running": r.running, "waiting": r.waiting}
                for r in self._replicas]

    # ---- the front-end loop (main thread) -------------------------------------------------
    def run(self) -> None:
        """Route, relay and recover until ``request_stop`` and no open request, or until no
        replica is left; then stop the replicas."""
        try:
            while True:
                self._apply_inbox()
                if self.error is not None:
                    return
                if self._stopping and not self._reqs and self._inbox.empty():
                    return
                live = [r for r in self._replicas if r.alive]
                ready = wait([self._wake_r] + [r.events for r in live] + [r.process.sentinel for r in live])
                if self._wake_r in ready:
                    self._drain_wake()
                for rep in live:
                    if rep.events in ready:
                        self._receive(rep)
                    if rep.alive and rep.process.sentinel in ready:
                        self._receive(rep)  # what it sent before it died
                        self._died(rep, exit_reason(rep.process))
        except Exception as exc:  # a bug here: fail the open requests, loudly
            log.exception("the replica front-end failed")
            self._fail_all(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._accepting = False
            why = self.error or "the server is stopping"
            while True:  # what came in since the last look
                try:
                    kind, item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if kind == "add":
                    self._end(item, self._error_finish(item, why))
            for t in list(self._reqs.values()):
                self._end(t, self._error_finish(t, why))
            self.shutdown()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _apply_inbox(self) -> None:
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self._reqs[item.key] = item
                self._route(item)
            else:
                t = self._reqs.get(item)
                if t is not None and not t.cancelled:
                    t.cancelled = True
                    if t.replica is not None:
                        self._send(self._replicas[t.replica], ("cancel", t.key))

    def _route(self, t: _Tracked) -> None:
        sub, done = t.sub, len(t.tokens)
        if done:  # a continuation: what was streamed becomes part of the prompt
            deadline = None if sub.deadline_s is None else max(0.0, sub.deadline_s - (time.time() - t.arrival))
            sub = dataclasses.replace(sub, prompt=list(sub.prompt) + t.tokens, max_tokens=sub.max_tokens - done,
                                      deadline_s=deadline)
        request = Request(t.key, len(sub.prompt), sub.max_tokens, arrival_s=t.arrival, deadline_s=sub.deadline_s)
        try:
            replica = self.book.route(self.router, request)
        except NoReplicaError:
            self._end(t, self._error_finish(t, self.error or "no replica is alive"))
            return
        self.book.assign(replica, t.key, sub.max_tokens)
        t.replica = replica
        self.metrics.replica_requests.labels(replica=str(replica)).inc()
        self._send(self._replicas[replica], ("add", t.key, sub))

    def _send(self, rep: _Replica, msg: tuple) -> None:
        if not rep.alive:
            return
        try:
            rep.commands.send(msg)
        except OSError:  # it died; its sentinel may not have fired yet
            self._died(rep, exit_reason(rep.process))

    def _receive(self, rep: _Replica) -> None:
        try:
            while rep.alive and rep.events.poll():
                msg = rep.events.recv()
                if msg[0] == "events":
                    self._on_events(rep, *msg[1:])
                elif msg[0] == "error":
                    self._died(rep, f"its engine failed: {msg[1]}")
        except (EOFError, OSError) as exc:
            if rep.alive:
                self._died(rep, exit_reason(rep.process) if isinstance(exc, EOFError) else str(exc))
        except Exception as exc:  # a message cut short (the replica died while sending it)
            self._died(rep, f"{exit_reason(rep.process)}; {type(exc).__name__}: {exc}")

    def _on_events(self, rep: _Replica, tokens, started, finishes, records, load) -> None:
        for rec in records:
            self.metrics.observe(rec)
            self.book.observe(rep.id, rec)
            if self.on_trace is not None:
                self.on_trace(rec)
        for key, admitted, first in started:
            t = self._reqs.get(key)
            if t is not None and t.replica == rep.id and t.admitted_time is None:
                t.admitted_time, t.first_token_time = admitted, first
        for key, ids in tokens:
            t = self._reqs.get(key)
            if t is None or t.replica != rep.id:
                continue
            if not t.started:
                self._set_started(t, True)
            t.tokens += ids
            t.events += 1
            self.book.consume(rep.id, key, len(ids))
            self.metrics.generation_tokens.inc(len(ids))
            self._post(t, ids)
        for key, finish in finishes:
            t = self._reqs.get(key)
            if t is not None and t.replica == rep.id:
                self._finish(t, finish)
        rep.running, rep.waiting = load
        self.metrics.observe_queue(self._running, self._waiting)

    def _set_started(self, t: _Tracked, started: bool) -> None:
        if t.started == started:
            return
        t.started = started
        with self._lock:
            self._waiting += -1 if started else 1
        self._running += 1 if started else -1

    def _finish(self, t: _Tracked, finish: Finish, whole: bool = False) -> None:
        """A replica's ``Finish`` for ``t`` (its last attempt's), in the terms of the whole
        request; ``whole``: one that already is."""
        if not whole:
            finish = dataclasses.replace(
                finish, arrival_time=t.arrival,
                admitted_time=t.admitted_time if t.admitted_time is not None else finish.admitted_time,
                first_token_time=t.first_token_time if t.first_token_time is not None else finish.first_token_time,
                num_steps=finish.num_steps + t.events_before, num_tokens=len(t.tokens))
        if finish.reason == "cancelled":
            self.metrics.cancelled.inc()
            log.info("request %d cancelled: the client went away", t.key)
        elif finish.reason in ("stop", "length"):
            self.metrics.observe_times(len(t.sub.prompt), len(t.tokens), finish.arrival_time, finish.admitted_time,
                                       finish.first_token_time, finish.finish_time)
        self._end(t, finish)

    def _end(self, t: _Tracked, finish: Finish) -> None:
        self._reqs.pop(t.key, None)
        if t.replica is not None:
            self.book.release(t.replica, t.key)
        if t.started:
            self._set_started(t, False)
        with self._lock:
            self._waiting -= 1
        self._post(t, finish)

    def _error_finish(self, t: _Tracked, message: str) -> Finish:
        now = time.time()
        return Finish("error", t.arrival, t.admitted_time, t.first_token_time, now, 0, len(t.tokens), message)

    def _post(self, t: _Tracked, item) -> None:
        t.stream.loop.call_soon_threadsafe(t.stream.events.put_nowait, item)

    # ---- faults --------------------------------------------------------------------------
    def _died(self, rep: _Replica, why: str) -> None:
        if not rep.alive:
            return
        rep.alive = False
        rep.running = rep.waiting = 0
        self.book.fail(rep.id)
        orphans = [t for t in self._reqs.values() if t.replica == rep.id]
        alive = sum(r.alive for r in self._replicas)
        if alive:
            log.error("replica %d died (%s); re-queuing its %d requests on %d live replicas", rep.id, why,
                      len(orphans), alive)
        else:
            log.error("replica %d died (%s); no replica is left, failing its %d requests", rep.id, why, len(orphans))
        self.metrics.replica_failures.inc()
        self.metrics.replicas_alive.set(alive)
        if rep.process.is_alive():  # its engine failed: it is on its way out
            rep.process.terminate()
        if alive == 0:
            self._fail_all(f"every replica failed (the last, replica {rep.id}: {why})")
            return
        for t in orphans:
            if self._reqs.get(t.key) is t and t.replica == rep.id:  # not ended by a nested failure
                self._requeue(t)
        self.metrics.observe_queue(self._running, self._waiting)

    def _requeue(self, t: _Tracked) -> None:
        t.replica = None
        t.events_before += t.events
        t.events = 0
        if t.started:
            self._set_started(t, False)
        eos = self.eos_token_id
        now = time.time()
        ended_by_eos = eos is not None and not t.sub.ignore_eos and t.tokens and t.tokens[-1] == eos
        if t.cancelled or ended_by_eos or len(t.tokens) >= t.sub.max_tokens:
            # Nothing left to generate: it ended on the dead replica before its Finish came.
            reason = "cancelled" if t.cancelled else "stop" if ended_by_eos else "length"
            self._finish(t, Finish(reason, t.arrival, t.admitted_time, t.first_token_time, now,
                                   max(0, t.events_before - 1), len(t.tokens)), whole=True)
            return
        if t.retries >= MAX_RETRIES:
            self._end(t, self._error_finish(t, f"the request was re-queued {MAX_RETRIES} times; its replicas "
                                               "kept failing"))
            return
        t.retries += 1
        self.metrics.retries.inc()
        self._route(t)

    def _fail_all(self, message: str) -> None:
        self.error = message
        for t in list(self._reqs.values()):
            self._end(t, self._error_finish(t, message))
        self.metrics.replicas_alive.set(sum(r.alive for r in self._replicas))

    # ---- shutdown --------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S, quiet: bool = False) -> None:
        """Stop every replica (``stop_replicas``); idempotent."""
        stop_replicas(self._replicas, timeout_s, quiet)
