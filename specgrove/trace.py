"""Step traces: the versioned line format both worlds write and calibration reads.

JSON lines, readable without torch. Every line has ``"v"`` (the schema version) and ``"kind"``:

* ``step``: one decoding step of a batch (one target verification forward): its start and end
  (seconds on the writer's clock), batch size, tokens in the forward, cached context tokens
  over the batch, the draft rounds and each round's width (expanded nodes), draft, verify and
  other (post-verify bookkeeping) milliseconds, and per request its share (``RequestShare``:
  tree size, depth, accepted length, emitted tokens; the tree's parents, node scores and the
  accepted nodes when known).
* ``prefill``: the admission of new requests: how many, their prompt tokens, and the target
  and draft milliseconds.
* ``request``: one finished request: its prompt and output tokens, and when it arrived, was
  admitted, got its first token and finished (the request events).

Run labels (method, max batch, repeat) ride on every line. The executor writes traces from
``generate``, ``bench`` and ``serve`` (``--trace``), the simulator from ``sim --trace``;
``read_trace`` gives a ``Trace`` of typed records and names a bad line by file and line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from specgrove.jsonl import read_jsonl

TRACE_VERSION = 1


class StepTraceError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Labels:
    """Which run a line belongs to."""

    method: str = ""
    max_batch: int = 0
    repeat: int = 0


@dataclass(frozen=True)
class RequestShare:
    """One request's part of a step."""

    request_id: int
    context_tokens: int  # this request's cached target tokens when the step began
    tree_size: int  # nodes verified (the root not counted)
    depth: int
    accepted_len: int  # tree nodes accepted
    emitted: int  # accepted + the bonus token, cut at max tokens or EOS
    parents: tuple[int, ...] = ()  # the verified tree (-1 = the root); empty if not recorded
    scores: tuple[float, ...] = ()  # each node's score as the policy ranked it (draft probability,
    #                                 or its mapped acceptance under a confidence map)
    accepted_nodes: tuple[int, ...] = ()  # the accepted path, root to deepest
    # Where the tree came from: -1, the draft (or no tree); n >= 0, a prompt-lookup chain copied
    # from an order-n match in the request's own context (0: the context had no match).
    lookup_order: int = -1


@dataclass(frozen=True)
class StepRecord:
    step: int
    start_s: float
    end_s: float
    batch_size: int
    tokens_in_forward: int  # roots + tree nodes over the batch
    context_tokens: int  # cached target tokens over the batch
    draft_rounds: int
    round_widths: tuple[int, ...]  # expanded nodes in each draft round
    draft_ms: float
    verify_ms: float
    other_ms: float  # after verification: compaction, emission, retirement
    requests: tuple[RequestShare, ...]
    labels: Labels = Labels()
    # Requests prefilled inside this step's target forward (the simulator's mixed batches;
    # the executor prefills apart, in ``prefill`` lines, so 0 there).
    num_prefill: int = 0
    prefill_tokens: int = 0
    kind = "step"


@dataclass(frozen=True)
class PrefillRecord:
    step: int  # the step index the admission preceded
    start_s: float
    end_s: float
    num_requests: int
    prompt_tokens: int  # over the admitted requests
    target_ms: float
    draft_ms: float
    labels: Labels = Labels()
    kind = "prefill"


@dataclass(frozen=True)
class RequestTimes:
    request_id: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    admitted_s: float
    first_token_s: float
    finish_s: float
    domain: str = "default"
    labels: Labels = Labels()
    kind = "request"


Record = StepRecord | PrefillRecord | RequestTimes
KINDS: dict[str, type] = {cls.kind: cls for cls in (StepRecord, PrefillRecord, RequestTimes)}


@dataclass
class Trace:
    steps: list[StepRecord] = field(default_factory=list)
    prefills: list[PrefillRecord] = field(default_factory=list)
    requests: list[RequestTimes] = field(default_factory=list)

    def add(self, rec: Record) -> None:
        {"step": self.steps, "prefill": self.prefills, "request": self.requests}[rec.kind].append(rec)

    def request_steps(self) -> Iterable[tuple[StepRecord, RequestShare]]:
        for s in self.steps:
            for r in s.requests:
                yield s, r


def to_json_dict(rec: Record) -> dict:
    out = {"v": TRACE_VERSION, "kind": rec.kind}
    for f in fields(rec):
        value = getattr(rec, f.name)
        if f.name == "labels":
            out.update(asdict(value))
        elif f.name == "requests":
            out["requests"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(r).items()} for r in value]
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


class TraceWriter:
    """Collects records; with a path, also appends them as JSON lines as they come.

    ``labels`` (method, max_batch, repeat) are stamped on every record; change them between
    runs that share one file. ``keep=False`` (a long-running server) writes without keeping."""

    def __init__(self, path: str | Path | None, keep: bool = True, **labels) -> None:
        self.path = Path(path) if path else None
        self.keep = keep
        self.labels = labels
        self.trace = Trace()
        self._file = None

    @property
    def steps(self) -> list[StepRecord]:
        return self.trace.steps

    def __enter__(self) -> TraceWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()

    def record(self, rec: Record) -> None:
        if self.labels:
            rec = dataclasses.replace(rec, labels=dataclasses.replace(rec.labels, **self.labels))
        if self.keep:
            self.trace.add(rec)
        if self._file is not None:
            self._file.write(json.dumps(to_json_dict(rec)) + "\n")
            self._file.flush()


_TYPES = {"int": int, "float": (int, float), "str": str}


def _check_scalars(cls, values: dict, where: str) -> None:
    for f in fields(cls):
        if f.name in values and f.type in _TYPES:
            value = values[f.name]
            if isinstance(value, bool) or not isinstance(value, _TYPES[f.type]):
                raise StepTraceError(f"{where}: {f.name} must be {f.type}, got {value!r}")


def _build(cls, item: dict, where: str, extra: tuple[str, ...] = ()):
    names = {f.name for f in fields(cls)}
    allowed = names | set(extra)
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise StepTraceError(f"{where}: unknown field {unknown[0]!r}")
    required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in item]
    if missing:
        raise StepTraceError(f"{where}: missing field {missing[0]!r}")
    values = {k: v for k, v in item.items() if k in names}
    _check_scalars(cls, values, where)
    for f in fields(cls):
        if f.name in values and f.type in ("tuple[int, ...]", "tuple[float, ...]"):
            try:
                kind = float if "float" in f.type else int
                values[f.name] = tuple(kind(x) for x in values[f.name])
            except (TypeError, ValueError):
                raise StepTraceError(f"{where}: {f.name} must be a list of numbers") from None
    return values


def parse_record(item: dict, where: str = "record") -> Record:
    if item.get("v") != TRACE_VERSION:
        raise StepTraceError(f"{where}: trace schema version {item.get('v')!r}; this reader reads {TRACE_VERSION}")
    cls = KINDS.get(item.get("kind"))
    if cls is None:
        raise StepTraceError(f"{where}: unknown kind {item.get('kind')!r}; valid: {', '.join(KINDS)}")
    label_names = tuple(f.name for f in fields(Labels))
    body = {k: v for k, v in item.items() if k not in ("v", "kind")}
    values = _build(cls, body, where, extra=label_names)
    labels = {k: body[k] for k in label_names if k in body}
    _check_scalars(Labels, labels, where)
    values["labels"] = Labels(**labels)
    if cls is StepRecord:
        if not isinstance(body["requests"], list):
            raise StepTraceError(f"{where}: requests must be a list")
        shares = []
        for j, share in enumerate(body["requests"]):
            if not isinstance(share, dict):
                raise StepTraceError(f"{where}: requests[{j}] must be an object")
            shares.append(RequestShare(**_build(RequestShare, share, f"{where}: requests[{j}]")))
        values["requests"] = tuple(shares)
    return cls(**values)


def read_trace(path: str | Path) -> Trace:
    """Every record of a trace file, by kind, in file order."""
    trace = Trace()
    for where, item in read_jsonl(path, "trace", StepTraceError):
        trace.add(parse_record(item, where))
    return trace


def summarize(steps: Iterable[StepRecord], num_tokens: int, wall_s: float) -> dict:
    """Aggregate one run's steps: tau is tokens emitted per request per step; the
    speculative-decoding metrics as vLLM reports them (``spec_metrics``) are added."""
    from specgrove.spec_metrics import spec_decode_metrics

    steps = list(steps)
    shares = [r for s in steps for r in s.requests]
    stats = {
        "tokens": num_tokens,
        "steps": len(shares),
        "target_forwards": len(steps),
        "tau": sum(r.emitted for r in shares) / len(shares) if shares else 0.0,
        "mean_tree_size": sum(r.tree_size for r in shares) / len(shares) if shares else 0.0,
        "tokens_per_s": num_tokens / wall_s if wall_s > 0 else 0.0,
        "wall_s": wall_s,
        "draft_ms": sum(s.draft_ms for s in steps),
        "verify_ms": sum(s.verify_ms for s in steps),
    }
    stats.update({k: v for k, v in spec_decode_metrics(steps).items() if k not in stats})
    return stats
