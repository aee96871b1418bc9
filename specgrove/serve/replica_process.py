"""A replica's process: load the pair, build the engine, then run an engine loop driven by the
front-end's command pipe (add, cancel, stop), sending back each half-step's new tokens,
finishes, trace records and load (see ``specgrove.serve.replicas``)."""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection

from specgrove.executor.parallel.placement import PairSource
from specgrove.serve.runner import Finish
from specgrove.trace import RequestTimes, StepRecord

log = logging.getLogger("specgrove.serve")


def _describe(exc: BaseException) -> str:
    from specgrove.executor.loading import PairLoadError

    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    return text if isinstance(exc, PairLoadError) else f"{type(exc).__name__}: {text}"


def replica_main(replica_id: int, source: PairSource, config, placement, commands: Connection,
                 events: Connection) -> None:
    """A replica's process: load, build the engine, say ready, then run the engine loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the front-end drains
    import torch

    if source.threads:
        torch.set_num_threads(source.threads)
    records: list = []
    try:
        from specgrove.serve.server import make_engine

        pair = source.load()
        replica = make_engine(pair, config, placement, on_trace=records.append, source=source)
        engine = replica.engine
    except Exception as exc:
        events.send(("failed", _describe(exc)))
        return
    try:
        events.send(("ready", {"max_positions": engine.max_positions, "eos_token_id": engine.config.eos_token_id}))
    except OSError:
        return  # the front-end is gone
    try:
        _ReplicaLoop(replica_id, engine, commands, events, records).run()
    finally:
        replica.close()  # its own ranks (tensor-parallel peers, a separate draft)


class _ReplicaLoop:
    def __init__(self, replica_id: int, engine, commands: Connection, events: Connection, records: list) -> None:
        self.replica_id, self.engine, self.events, self.records = replica_id, engine, events, records
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._keys: dict[int, int] = {}  # engine request id -> the front-end's key
        self._rids: dict[int, int] = {}  # and back
        self._failed: list[tuple[int, Finish]] = []  # adds the engine refused
        self._stopping = False
        self._load = (-1, -1)
        self._wall_offset = time.time() - time.perf_counter()
        threading.Thread(target=self._read, args=(commands,), name="specgrove-replica-commands", daemon=True).start()

    def _read(self, commands: Connection) -> None:
        while True:
            try:
                msg = commands.recv()
            except (EOFError, OSError):  # the front-end is gone
                msg = ("eof",)
            self._inbox.put((*msg, time.perf_counter()))  # stamped on receipt: the request's arrival here
            self._wake.set()
            if msg[0] == "eof":
                return

    def run(self) -> None:
        engine = self.engine
        try:
            while True:
                if not self._apply():
                    return  # the front-end is gone: nobody to serve
                if not engine.has_work:
                    self._send([], [])
                    if self._stopping:
                        return
                    self._wake.wait()
                    self._wake.clear()
                    continue
                # First tokens go out before the step that follows, as in EngineRunner.
                started = self._started_by(engine.admit())
                self._send(*started)
                self._send([(self._keys[rid], toks) for rid, toks in engine.decode() if toks], [])
        except (BrokenPipeError, ConnectionResetError):
            return  # the front-end is gone
        except Exception as exc:  # a bug or a device error: the front-end re-routes our requests
            log.exception("replica %d: the engine failed", self.replica_id)
            try:
                self.events.send(("error", f"{type(exc).__name__}: {exc}"))
            except OSError:
                pass
            raise SystemExit(1) from None

    def _apply(self) -> bool:
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                return True
            kind = msg[0]
            if kind == "add":
                _, key, sub, received = msg
                try:
                    deadline = None if sub.deadline_s is None else received + sub.deadline_s
                    rid = self.engine.add_request(sub.prompt, sub.max_tokens, sub.sampling, sub.seed, deadline,
                                                  sub.ignore_eos, arrival_s=received)
                except ValueError as exc:
                    now = time.time()
                    self._failed.append((key, Finish("error", now, None, None, now, 0, 0, str(exc))))
                    continue
                self._keys[rid], self._rids[key] = key, rid
            elif kind == "cancel":
                rid = self._rids.get(msg[1])
                if rid is not None:
                    self.engine.cancel(rid)
            elif kind == "stop":
                self._stopping = True
            elif kind == "eof":
                return False

    def _started_by(self, out) -> tuple[list, list]:
        """Tokens of an admission, and (key, admitted, first token) wall times of those admitted."""
        tokens, started = [], []
        for rid, toks in out:
            key = self._keys[rid]
            seq = next((s for s in self.engine.active if s.request_id == rid), None) or self.engine.finished.get(rid)
            if seq is not None:
                started.append((key, self._wall(seq.admitted_s), self._wall(seq.first_token_s)))
            if toks:
                tokens.append((key, toks))
        return tokens, started

    def _wall(self, t: float | None) -> float | None:
        return None if t is None else t + self._wall_offset

    def _send(self, tokens: list, started: list) -> None:
        records = [self._relabel(r) for r in self.records]
        self.records.clear()
        finishes = self._finishes()
        engine = self.engine
        load = (len(engine.active), len(engine.waiting))
        if tokens or started or finishes or records or load != self._load:
            self.events.send(("events", tokens, started, finishes, records, load))
            self._load = load

    def _relabel(self, rec):
        """Engine request ids become the front-end's keys (unique over replicas)."""
        if isinstance(rec, StepRecord):
            shares = tuple(dataclasses.replace(s, request_id=self._keys.get(s.request_id, s.request_id))
                           for s in rec.requests)
            return dataclasses.replace(rec, requests=shares)
        if isinstance(rec, RequestTimes):
            return dataclasses.replace(rec, request_id=self._keys.get(rec.request_id, rec.request_id))
        return rec

    def _finishes(self) -> list[tuple[int, Finish]]:
        engine = self.engine
        eos = engine.config.eos_token_id
        out, self._failed = self._failed, []
        for rid in list(engine.finished):
            seq = engine.finished.pop(rid)
            if seq.is_cancelled:
                reason = "cancelled"
            else:
                stopped = eos is not None and not seq.ignore_eos and seq.generated and seq.generated[-1] == eos
                reason = "stop" if stopped else "length"
            key = self._keys.pop(rid)
            self._rids.pop(key, None)
            out.append((key, Finish(reason, self._wall(seq.arrival_s), self._wall(seq.admitted_s),
                                    self._wall(seq.first_token_s), self._wall(seq.finish_s) or time.time(),
                                    seq.num_steps, len(seq.generated))))
        return out
