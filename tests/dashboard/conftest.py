"""Dashboard tests: the 'dashboard' extra (streamlit) required, never torch. Each module starts
with ``pytest.importorskip("streamlit")``, so a light install reports them skipped.

Fixtures build small results of every kind the pages read, from the simulator (a run
directory in ``load``'s format, a step trace with trees, a replay's sweep.json) and from the
study's own writer (a study directory with made-up real rows and a tiny simulated sweep).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from dash_helpers import SMALL

@pytest.fixture
def small() -> dict:
    return copy.deepcopy(SMALL)


@pytest.fixture(scope="session")
def sim_run(tmp_path_factory) -> tuple[Path, Path, object]:
    """A simulated run written as ``sim --out`` (the same files as ``load --out``), its step
    trace (trees recorded: exact mode), and the ``Result``."""
    from specgrove.sim.api import run_scenario

    out = tmp_path_factory.mktemp("run")
    trace = out / "trace.jsonl"
    result = run_scenario(copy.deepcopy(SMALL), trace_path=trace)
    result.write(out)
    return out, trace, result


@pytest.fixture(scope="session")
def replay_dir(tmp_path_factory) -> Path:
    """A sweep.json in the format ``replay`` (and ``sweep``) writes: three tree policies."""
    from specgrove.sim.api import sweep
    from specgrove.sim.sweep import write_sweep

    out = tmp_path_factory.mktemp("replay")
    results = sweep(copy.deepcopy(SMALL), {"policies.tree": ["static", "dynamic", "ar"]}, processes=1)
    write_sweep(results, out, ["policies.tree"])
    return out


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    """A study directory from the study's own writer: made-up real rows (no torch here) and a
    tiny simulated sweep of one pair."""
    from specgrove.study.report import write_report
    from specgrove.study.settings import METHODS, QUICK, SimPair, Settings
    from specgrove.study.simulated import run_sim, speedups

    settings = Settings("test", prompts_per_domain=2, max_new_tokens=8, batch_sizes=(1, 4), repeats=1,
                        sim_pairs=(SimPair("70b", "llama-2-70b/7b", 4, (1.0, 3.0), 1.0, (4, 8)),),
                        sim_duration_s=4.0, sim_samples=32, deploy_policies=("ar", "static", "dynamic"),
                        budget_duration_s=2.0)
    real = [{"domain": d, "temperature": t, "batch_size": b, "method": m, "tokens_per_s": 100.0 + i,
             "tau": 1.0 + i / 10, "mean_tree_size": 8.0, "draft_ms_per_step": 1.0, "verify_ms_per_step": 2.0,
             "wall_ms_per_step": 3.5, "speedup_vs_ar": (100.0 + i) / 100.0, "num_prompts": 2, "repeats": 1,
             "outputs_equal_ar": "2/2" if t == 0 else ""}
            for d in QUICK.domains for t in QUICK.temperatures for b in (1, 4) for i, m in enumerate(METHODS)]
    sim_rows, sim_info = run_sim(settings, log=lambda _: None)
    out = tmp_path_factory.mktemp("study")
    meta = {"command": "specgrove study --out test", "seconds": 1.0, "finished_utc": "2026-01-01T00:00:00+00:00",
            "load_average": "0.00, 0.00, 0.00"}
    write_report(out, settings, real, {"device": "test CPU", "torch_threads": 1, "seconds": 0.5}, sim_rows, sim_info,
                 speedups(sim_rows), meta["command"], meta)
    return out
