"""Step traces: one JSON line per request per step, the simulator's calibration input."""

from __future__ import annotations

import json
from pathlib import Path

from specgrove.types import StepRecord


class TraceWriter:
    """Collects step records; with a path, also appends them as JSON lines as they come."""

    def __init__(self, path: str | Path | None, **context) -> None:
        self.path = Path(path) if path else None
        self.context = context  # e.g. method and batch size, added to every line
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
        self.records.append(rec)
        if self._file is not None:
            self._file.write(json.dumps({**self.context, **rec.to_json_dict()}) + "\n")
