"""Reading JSON-lines files (step traces, arrival traces, prompt files) with errors that name
the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def read_jsonl(path: str | Path, what: str, error: type[ValueError]) -> Iterator[tuple[str, dict]]:
    """Yield ``("FILE:LINE", object)`` for each non-blank line. Raises ``error`` (one line)
    for an unreadable file, text that is not UTF-8, a line that is not JSON or not an object;
    ``what`` names the kind of file in those messages."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: {what} is not UTF-8 text") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise error(f"{where}: expected a JSON object")
        yield where, item
