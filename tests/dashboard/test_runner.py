"""The what-if runner: the same summary as ``run_scenario``, progress from the trace, and
utilisation over time whose average is the summary's utilisation."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("streamlit")

from specgrove.dashboard.runner import busy_per_bin, run_with_progress  # noqa: E402
from specgrove.sim.api import run_scenario  # noqa: E402
from specgrove.sim.scenario import ScenarioError  # noqa: E402


@pytest.mark.parametrize("placement", ["same", "separate"])
def test_summary_progress_and_utilisation(small, placement):
    if placement == "separate":
        small["cluster"]["gpus_per_node"] = 2
        small["deployment"]["draft_placement"] = "separate"
    seen = []
    run = run_with_progress(copy.deepcopy(small), lambda f, text: seen.append((f, text)), poll_s=0.01)
    assert run.result.summary == run_scenario(copy.deepcopy(small)).summary
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    util = run.utilisation.groupby("resource")["busy"].mean()
    summary = run.result.summary["utilisation"]
    if placement == "same":
        assert util["target GPUs (draft shared)"] == pytest.approx(summary["gpu"], rel=1e-9)
    else:
        assert util["target GPUs"] == pytest.approx(summary["gpu"], rel=1e-9)
        assert util["draft GPU"] == pytest.approx(summary["draft_gpu"], rel=1e-9)


def test_bad_scenario_raises_before_running(small):
    small["workload"]["rate"] = -1
    with pytest.raises(ScenarioError, match="workload.rate"):
        run_with_progress(small, lambda *_: None)


def test_busy_per_bin_by_hand():
    import numpy as np

    edges = np.array([0.0, 1.0, 2.0, 3.0])
    busy = busy_per_bin(np.array([0.5, 1.5, 2.0]), np.array([1.5, 1.75, 3.0]), edges)
    assert busy.tolist() == pytest.approx([0.5, 0.75, 1.0])
