"""What the CLI needs between arguments and an engine: method options, calibration, stats."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from specgrove.executor.calibrate import measure_confidence_calibration, measure_rank_acceptance
from specgrove.executor.loading import ModelPair
from specgrove.types import StepRecord

# Per-method tree options. Budgets come from the engine config; these set the shapes.
METHOD_OPTIONS: dict[str, dict] = {
    "chain": {"length": 4},
    "static": {"widths": [1, 1, 3, 1, 1, 1, 1, 1]},
    "dynamic": {"topk": 4, "frontier": 4, "max_depth": 6},
    "dynamic-cost": {"topk": 4, "frontier": 4, "max_depth": 6},
    "sequoia": {"max_depth": 8},
}


# A held-out stdlib module the demo pair never trained on and the benchmark prompts never use.
DEMO_CALIBRATION_MODULE = "colorsys.py"


def calibration_ids(pair: ModelPair, fallback_text: str) -> list[int]:
    """Token ids to measure the pair on: for the demo pair a held-out module, else the text."""
    path = Path(sysconfig.get_paths()["stdlib"]) / DEMO_CALIBRATION_MODULE
    if pair.name == "demo" and path.is_file():
        return pair.tokenizer(path.read_text(encoding="utf-8"))["input_ids"][:4096]
    return pair.tokenizer(fallback_text)["input_ids"]


def method_options(method: str, pair: ModelPair, calibration_text: str, greedy: bool = True) -> dict:
    """Tree options for ``method``, with what it needs measured on this pair: Sequoia's rank
    acceptance, and for greedy dynamic trees the draft-confidence calibration."""
    options = dict(METHOD_OPTIONS.get(method, {}))
    if method == "sequoia":
        options["acceptance"] = measure_rank_acceptance(pair.target, pair.draft, calibration_ids(pair, calibration_text))
    elif method in ("dynamic", "dynamic-cost") and greedy:
        # Greedy acceptance is "draft token == target argmax", which a distilled draft's
        # probabilities can badly understate; rank nodes by the measured rate instead.
        ids = calibration_ids(pair, calibration_text)
        options["calibration"] = measure_confidence_calibration(pair.target, pair.draft, ids)
    return options


def summarize(records: list[StepRecord], num_tokens: int, wall_s: float) -> dict:
    """Aggregate step records: tau is tokens emitted per target forward (per request)."""
    steps = len(records)
    emitted = sum(r.extra.get("emitted", r.accepted_len + 1) for r in records)
    by_step = {}
    for r in records:
        by_step.setdefault(r.step, r)
    return {
        "tokens": num_tokens,
        "steps": steps,
        "target_forwards": len(by_step),
        "tau": emitted / steps if steps else 0.0,
        "mean_tree_size": float(np.mean([r.tree_size for r in records])) if records else 0.0,
        "tokens_per_s": num_tokens / wall_s if wall_s > 0 else 0.0,
        "wall_s": wall_s,
        "draft_ms": sum(r.draft_ms for r in by_step.values()),
        "verify_ms": sum(r.verify_ms for r in by_step.values()),
    }
