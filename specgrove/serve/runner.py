"""The engine loop, apart from the server's event loop, fed and drained by it.

The event loop never runs a model: it puts commands (add, cancel) in an inbox and wakes the
engine loop, which applies them between steps, steps while there is work, and posts each
request's new tokens and its end back to the event loop (``call_soon_threadsafe``). Requests
join and leave between steps, so batching stays continuous. When idle the engine loop blocks
on an event; it never polls.

``specgrove serve`` runs the engine loop on the main thread (``run``) and the HTTP server on a
second one: measured here, torch on 2 cores decoded 0.69x as fast from a secondary thread as
from the main one (its OpenMP team is the main thread's). ``start`` runs it on a thread of its
own instead, for embedding.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from specgrove.executor.engine import SpecEngine
from specgrove.executor.request_state import RequestState
from specgrove.executor.sampling import SamplingParams
from specgrove.serve.metrics import ServeMetrics

log = logging.getLogger("specgrove.serve")


@dataclass(frozen=True)
class Submission:
    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams
    seed: int | None = None
    deadline_s: float | None = None  # relative to arrival
    ignore_eos: bool = False


@dataclass(frozen=True)
class Finish:
    """A request's end: why, and its server-side times (``time.time()`` seconds)."""

    reason: str  # "stop" (EOS), "length", "cancelled" or "error"
    arrival_time: float
    admitted_time: float | None
    first_token_time: float | None
    finish_time: float
    num_steps: int  # verification steps after the first token
    num_tokens: int
    error: str | None = None


@dataclass(eq=False)
class Stream:
    """The event loop's end of one request: lists of new token ids, then a ``Finish``, arrive
    on ``events``. ``request_id`` is set once the engine thread has added it."""

    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    request_id: int | None = None


class LoopHost:
    """``run`` (the loop, on the calling thread) or ``start`` (on a thread of its own); ``stop``
    asks it to finish (``request_stop``) and waits for a started one."""

    _thread: threading.Thread | None = None
    thread_name = "specgrove-loop"

    def run(self) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """``request_stop``, then wait up to ``timeout_s`` for a ``start``ed loop to end."""
        self.request_stop()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class EngineRunner(LoopHost):
    thread_name = "specgrove-engine"

    def __init__(self, engine: SpecEngine, metrics: ServeMetrics, max_queue: int) -> None:
        self.engine, self.metrics, self.max_queue = engine, metrics, max_queue
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._streams: dict[int, Stream] = {}
        self._unadded = 0  # submitted, not yet added by the engine thread
        self._lock = threading.Lock()
        self._stopping = False
        # perf_counter (the engine's clock) to wall-clock time, for the times clients see.
        self._wall_offset = time.time() - time.perf_counter()
        self.error: str | None = None
        self.on_stop = None  # called once the engine loop ends (a replica stops its ranks)

    def run(self) -> None:
        """The engine loop on the calling thread, until ``request_stop`` and no work is left."""
        self._run()

    def wake(self) -> None:
        self._wake.set()

    @property
    def num_running(self) -> int:
        return len(self.engine.active)

    @property
    def num_waiting(self) -> int:
        return len(self.engine.waiting) + self._unadded

    def is_full(self) -> bool:
        return self.num_waiting >= self.max_queue

    def submit(self, sub: Submission) -> Stream:
        """Queue a request (call on the event loop); its events come on the returned stream."""
        stream = Stream(asyncio.get_running_loop())
        received = time.perf_counter()  # the request's arrival, even while the engine is mid-step
        with self._lock:
            self._unadded += 1
        self._inbox.put(("add", sub, stream, received))
        self._wake.set()
        return stream

    def cancel(self, stream: Stream) -> None:
        """Drop a request whose client went away (commands apply in order: after its add)."""
        self._inbox.put(("cancel", None, stream, None))
        self._wake.set()

    def request_stop(self) -> None:
        """Finish the running and waiting requests, then return from the engine loop."""
        self._stopping = True
        self._wake.set()

    # ---- the engine thread ----------------------------------------------------------------
    def _apply_inbox(self) -> None:
        while True:
            try:
                kind, sub, stream, received = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                deadline = None if sub.deadline_s is None else received + sub.deadline_s
                rid = self.engine.add_request(sub.prompt, sub.max_tokens, sub.sampling, sub.seed, deadline,
                                              sub.ignore_eos, arrival_s=received)
                stream.request_id = rid
                self._streams[rid] = stream
                with self._lock:
                    self._unadded -= 1
            elif stream.request_id is not None and self.engine.cancel(stream.request_id):
                self.metrics.cancelled.inc()
                log.info("request %d cancelled: the client went away", stream.request_id)

    def _run(self) -> None:
        engine = self.engine
        try:
            while True:
                self._apply_inbox()
                if not engine.has_work:
                    self._finish_done()  # requests cancelled while waiting
                    if self._stopping:
                        return
                    self._wake.wait()
                    self._wake.clear()
                    continue
                # First tokens go out before the step that follows: TTFT is the prefill's time.
                for half in (engine.admit, engine.decode):
                    for rid, tokens in half():
                        if tokens:
                            self.metrics.generation_tokens.inc(len(tokens))
                            self._post(rid, tokens)
                    self._finish_done()
                self.metrics.observe_queue(len(engine.active), self.num_waiting)
        except Exception as exc:  # a bug or a device error: fail every open request, loudly
            log.exception("the engine failed")
            self.error = f"{type(exc).__name__}: {exc}"
            now = time.time()
            for rid in list(self._streams):
                self._post(rid, Finish("error", now, None, None, now, 0, 0, self.error))
            self._streams.clear()
        finally:
            if self.on_stop is not None:
                self.on_stop()

    def _post(self, rid: int, item) -> None:
        stream = self._streams.get(rid)
        if stream is not None:
            stream.loop.call_soon_threadsafe(stream.events.put_nowait, item)

    def _wall(self, t: float | None) -> float | None:
        return None if t is None else t + self._wall_offset

    def _finish_done(self) -> None:
        engine = self.engine
        eos = engine.config.eos_token_id
        for rid in list(engine.finished):
            seq: RequestState = engine.finished.pop(rid)
            if seq.is_cancelled:
                reason = "cancelled"
            else:
                stopped = eos is not None and not seq.ignore_eos and seq.generated and seq.generated[-1] == eos
                reason = "stop" if stopped else "length"
                self.metrics.observe_finish(seq)
            self._post(rid, Finish(reason, self._wall(seq.arrival_s), self._wall(seq.admitted_s),
                                   self._wall(seq.first_token_s), self._wall(seq.finish_s) or time.time(),
                                   seq.num_steps, len(seq.generated)))
            self._streams.pop(rid, None)
