"""Write benchmarks/prompts/*.jsonl: code prompts cut from the demo pair's held-out stdlib
modules (never trained on), and a few prose prompts. Deterministic for a given Python."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

HELD_OUT = ["json/decoder.py", "textwrap.py", "heapq.py", "bisect.py", "shlex.py", "fractions.py",
            "statistics.py", "dataclasses.py", "csv.py", "gzip.py", "queue.py", "difflib.py",
            "string.py", "calendar.py"]  # colorsys.py, also held out, is kept for measuring the pair
PROSE = [
    "The scheduler keeps a queue of waiting requests and admits them in arrival order",
    "Return a list of the lines in the text, breaking at line boundaries. Line breaks are not",
    "This module provides functions for reading and writing files in a simple format that",
    "Speculative decoding lets a small model propose several tokens, which the large model",
    "If the value is not found, the function raises an exception that describes what went",
    "The result is computed lazily: nothing is read from the file until the first item is",
]


def code_prompts(per_module: int = 2, context_lines: int = 6, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for module in HELD_OUT:
        lines = (root / module).read_text(encoding="utf-8").splitlines()
        starts = [i for i, line in enumerate(lines) if line.lstrip().startswith("def ") and i >= context_lines]
        for i in sorted(rng.sample(starts, min(per_module, len(starts)))):
            text = "\n".join(lines[i - context_lines : i + 1]) + "\n"
            out.append({"name": f"{module}:{i + 1}", "domain": "code", "text": text})
    return out


def main() -> None:
    here = Path(__file__).resolve().parent / "prompts"
    here.mkdir(exist_ok=True)
    with (here / "code.jsonl").open("w") as f:
        for p in code_prompts():
            f.write(json.dumps(p) + "\n")
    with (here / "prose.jsonl").open("w") as f:
        for i, text in enumerate(PROSE):
            f.write(json.dumps({"name": f"prose-{i}", "domain": "prose", "text": text}) + "\n")


if __name__ == "__main__":
    main()
