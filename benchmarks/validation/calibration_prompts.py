"""Write benchmarks/prompts/code_calibration.jsonl: code prompts for *calibrating* the simulator.

They come from the same held-out standard-library modules as the validation prompts
(``benchmarks/prompts/code.jsonl``: the demo pair never trained on either), so calibration and
validation see the same domain, as a deployment calibrated on last week's traffic would; but
from other places in those modules: no excerpt lies within 40 lines of a validation excerpt.
Like the validation prompts, each is the seven lines up to and including a ``def`` line.

    .venv/bin/python benchmarks/validation/calibration_prompts.py   (the committed file is its output)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from _demo_corpus import HOLDOUT, stdlib_dir  # noqa: E402

PER_MODULE = 2
MIN_GAP = 40


def main() -> None:
    taken: dict[str, list[int]] = {}
    for line in (ROOT / "benchmarks/prompts/code.jsonl").read_text().splitlines():
        module, at = json.loads(line)["name"].rsplit(":", 1)
        taken.setdefault(module, []).append(int(at))
    out = []
    for module in HOLDOUT:
        lines = (stdlib_dir() / module).read_text(encoding="utf-8").splitlines(keepends=True)
        defs = [i for i, text in enumerate(lines) if text.lstrip().startswith("def ") and i >= 6]
        free = [i for i in defs if all(abs(i - t) > MIN_GAP for t in taken.get(module, []))]
        # Spread the picks over the module: evenly spaced among the free def lines.
        picks = [free[round(k * (len(free) - 1) / max(PER_MODULE - 1, 1))] for k in range(PER_MODULE)] if free else []
        for i in sorted(set(picks)):
            out.append({"name": f"{module}:{i - 5}", "domain": "code", "text": "".join(lines[i - 6 : i + 1])})
    path = ROOT / "benchmarks/prompts/code_calibration.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in out))
    print(f"wrote {len(out)} prompts to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
