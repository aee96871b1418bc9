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
    "lookup": {"length": 4},
    "dynamic-lookup": {"topk": 4, "frontier": 4, "max_depth": 6, "lookup_length": 8},
}


# The tree knobs of the command line (as SGLang names them: --topk, --depth) and, per method
# that takes one, the tree option it sets. A knob a method does not take is refused.
KNOBS: dict[str, dict[str, str]] = {
    "topk": {"dynamic": "topk", "dynamic-cost": "topk", "dynamic-lookup": "topk"},
    "depth": {"dynamic": "max_depth", "dynamic-cost": "max_depth", "sequoia": "max_depth", "chain": "length",
              "lookup": "length", "dynamic-lookup": "max_depth"},
}


def knob_methods(knob: str) -> list[str]:
    """The methods that take ``knob``."""
    return list(KNOBS[knob])


def knob_options(method: str, knobs: dict[str, int | None]) -> dict:
    """The tree options ``knobs`` (``{"topk": 8, "depth": None}``; None = not given) set for
    ``method``; a given knob the method does not take raises ValueError (one line)."""
    out = {}
    for knob, value in knobs.items():
        if value is None:
            continue
        option = KNOBS[knob].get(method)
        if option is None:
            raise ValueError(f"--{knob} does not apply to method {method!r}; it applies to "
                             f"{', '.join(knob_methods(knob))}")
        out[option] = value
    return out


def applicable_knobs(method: str, knobs: dict[str, int | None]) -> dict[str, int | None]:
    """The given knobs that ``method`` takes (``bench`` applies each to the methods that do)."""
    return {k: v for k, v in knobs.items() if v is not None and method in KNOBS[k]}


# A held-out stdlib module the demo pair never trained on and the benchmark prompts never use.
DEMO_MEASUREMENT_MODULE = "colorsys.py"


def measurement_ids(pair: ModelPair, fallback_text: str) -> list[int]:
    """Token ids to measure the pair on: for the demo pair a held-out module, else the text."""
    path = Path(sysconfig.get_paths()["stdlib"]) / DEMO_MEASUREMENT_MODULE
    if pair.name == "demo" and path.is_file():
        return pair.tokenizer(path.read_text(encoding="utf-8"))["input_ids"][:4096]
    return pair.tokenizer(fallback_text)["input_ids"]


def method_options(method: str, pair: ModelPair, measurement_text: str, greedy: bool = True,
                   knobs: dict[str, int | None] | None = None) -> dict:
    """Tree options for ``method`` (``METHOD_OPTIONS``, then the command line's ``knobs``), with
    what it needs measured on this pair: Sequoia's rank acceptance, and for greedy dynamic
    trees the draft-confidence map. A measurement text of under two tokens measures nothing
    (the policy's defaults stand)."""
    options = dict(METHOD_OPTIONS.get(method, {}))
    options.update(knob_options(method, knobs or {}))
    measures_sequoia = method == "sequoia"
    measures_confidence = method in ("dynamic", "dynamic-cost", "dynamic-lookup") and greedy
    if not (measures_sequoia or measures_confidence):
        return options
    ids = measurement_ids(pair, measurement_text)
    if len(ids) < 2:  # nothing to teacher-force on
        return options
    if measures_sequoia:
        options["acceptance"] = measure_rank_acceptance(pair.target, pair.draft, ids)
    else:
        # Greedy acceptance is "draft token == target argmax", which a distilled draft's
        # probabilities can badly understate; rank nodes by the measured rate instead.
        options["confidence"] = measure_confidence_map(pair.target, pair.draft, ids)
    return options
