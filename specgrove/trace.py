"""Step traces: the line format both worlds write and calibration reads (JSON lines, no torch).

One line per request per decoding step. The executor writes them as it decodes (``generate
--trace``, ``bench --trace``); ``read_trace`` gives them back as typed records, checking every
line, so a reader never guesses at a missing key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from specgrove.jsonl import read_jsonl


class StepTraceError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class StepRecord:
    """One request's share of one decoding step."""

    request_id: int
    step: int  # the engine's step index (shared by every request of the batch)
    batch_size: int  # requests verified in this step
    tokens_in_forward: int  # roots + tree nodes in the target forward, over the batch
    context_tokens: int  # this request's cached target tokens when the step began
    tree_size: int  # nodes verified (the root not counted)
    depth: int
    parents: tuple[int, ...]  # the verified tree's parents array (-1 = the root)
    draft_rounds: int  # draft forwards the step ran (one per tree depth, for the whole batch)
    accepted_len: int  # tree nodes accepted
    emitted: int  # tokens emitted: accepted + the bonus token, cut at max tokens or EOS
    draft_ms: float  # the step's draft time (the whole batch's)
    verify_ms: float  # the step's target forward and acceptance (the whole batch's)
    method: str = ""  # run labels: which method, batch limit and repeat produced the line
    max_batch: int = 0
    repeat: int = 0

    def to_json_dict(self) -> dict:
        out = asdict(self)
        out["parents"] = list(self.parents)
        return out


FIELDS = {f.name: f for f in fields(StepRecord)}
REQUIRED = [f.name for f in fields(StepRecord) if f.default is dataclasses.MISSING]
LABELS = ("method", "max_batch", "repeat")


class TraceWriter:
    """Collects step records; with a path, also appends them as JSON lines as they come.

    ``labels`` (method, max_batch, repeat) are stamped on every record; change them between
    runs that share one file. ``keep=False`` (a long-running server) writes without keeping."""

    def __init__(self, path: str | Path | None, keep: bool = True, **labels) -> None:
        self.path = Path(path) if path else None
        self.keep = keep
        self.labels = labels
        self.records: list[StepRecord] = []
        self._file = None

    def __enter__(self) -> TraceWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()

    def record(self, rec: StepRecord) -> None:
        if self.labels:
            rec = dataclasses.replace(rec, **self.labels)
        if self.keep:
            self.records.append(rec)
        if self._file is not None:
            self._file.write(json.dumps(rec.to_json_dict()) + "\n")
            self._file.flush()


def parse_record(item: dict, where: str = "record") -> StepRecord:
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        raise StepTraceError(f"{where}: unknown field {unknown[0]!r}")
    missing = [name for name in REQUIRED if name not in item]
    if missing:
        raise StepTraceError(f"{where}: missing field {missing[0]!r}")
    values = dict(item)
    try:
        values["parents"] = tuple(int(p) for p in item["parents"])
    except (TypeError, ValueError):
        raise StepTraceError(f"{where}: parents must be a list of integers") from None
    for name, f in FIELDS.items():
        if name in values and name != "parents":
            want = {"int": int, "float": float, "str": str}[f.type]
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, (int, float) if want is float else want):
                raise StepTraceError(f"{where}: {name} must be {f.type}, got {value!r}")
    return StepRecord(**values)


def read_trace(path: str | Path) -> list[StepRecord]:
    """Every record of a trace file, in file order."""
    return [parse_record(item, where) for where, item in read_jsonl(path, "trace", StepTraceError)]


def summarize(records: Iterable[StepRecord], num_tokens: int, wall_s: float) -> dict:
    """Aggregate one run's records: tau is tokens emitted per step per request."""
    records = list(records)
    steps = len(records)
    by_step: dict[int, StepRecord] = {}
    for r in records:
        by_step.setdefault(r.step, r)
    return {
        "tokens": num_tokens,
        "steps": steps,
        "target_forwards": len(by_step),
        "tau": sum(r.emitted for r in records) / steps if steps else 0.0,
        "mean_tree_size": sum(r.tree_size for r in records) / steps if steps else 0.0,
        "tokens_per_s": num_tokens / wall_s if wall_s > 0 else 0.0,
        "wall_s": wall_s,
        "draft_ms": sum(r.draft_ms for r in by_step.values()),
        "verify_ms": sum(r.verify_ms for r in by_step.values()),
    }
