"""The mutation harness (``scripts/mutants.py``, too slow for CI) stays usable: every
mutation's text is still in its file exactly once, so a refactor that moves the code a
mutation patches is noticed here, not at the next audit."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_harness():
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


def test_every_mutation_still_applies():
    harness = load_harness()
    assert harness.MUTATIONS
    assert harness.check_patches(harness.MUTATIONS, ROOT) == []


def test_a_stale_mutation_is_reported(tmp_path):
    harness = load_harness()
    stale = harness.Mutation("stale", "text that is gone", "specgrove/cost.py", "no such text here", "x", ())
    problems = harness.check_patches([stale], ROOT)
    assert len(problems) == 1 and problems[0].startswith("stale: specgrove/cost.py holds the patched text 0 times")
