"""Each method's tree options, with what it needs measured on the running pair.

Budgets come from the engine config; these set the shapes. ``sequoia`` gets the pair's rank
acceptance and greedy dynamic trees the draft's confidence map, both measured on a text the
benchmark prompts never use.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from specgrove.executor.measure import measure_confidence_map, measure_rank_acceptance
from specgrove.executor.loading import ModelPair

METHOD_OPTIONS: dict[str, dict] = {
    "chain": {"length": 4},
    "static": {"widths": [1, 1, 3, 1, 1, 1, 1, 1]},
    "dynamic": {"topk": 4, "frontier": 4, "max_depth": 6},
    "dynamic-cost": {"topk": 4, "frontier": 4, "max_depth": 6},
    "sequoia": {"max_depth": 8},
}


# A held-out stdlib module the demo pair never trained on and the benchmark prompts never use.
DEMO_MEASUREMENT_MODULE = "colorsys.py"


def measurement_ids(pair: ModelPair, fallback_text: str) -> list[int]:
    """Token ids to measure the pair on: for the demo pair a held-out module, else the text."""
    path = Path(sysconfig.get_paths()["stdlib"]) / DEMO_MEASUREMENT_MODULE
    if pair.name == "demo" and path.is_file():
        return pair.tokenizer(path.read_text(encoding="utf-8"))["input_ids"][:4096]
    return pair.tokenizer(fallback_text)["input_ids"]


def method_options(method: str, pair: ModelPair, measurement_text: str, greedy: bool = True) -> dict:
    """Tree options for ``method``, with what it needs measured on this pair: Sequoia's rank
    acceptance, and for greedy dynamic trees the draft-confidence map."""
    options = dict(METHOD_OPTIONS.get(method, {}))
    if method == "sequoia":
        options["acceptance"] = measure_rank_acceptance(pair.target, pair.draft, measurement_ids(pair, measurement_text))
    elif method in ("dynamic", "dynamic-cost") and greedy:
        # Greedy acceptance is "draft token == target argmax", which a distilled draft's
        # probabilities can badly understate; rank nodes by the measured rate instead.
        ids = measurement_ids(pair, measurement_text)
        options["confidence"] = measure_confidence_map(pair.target, pair.draft, ids)
    return options
