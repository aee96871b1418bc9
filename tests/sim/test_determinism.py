"""Same scenario and seed, same bytes: summary.json and requests.csv carry no wall-clock
figures (those go to run.json)."""

import json

from sim_scenarios import small_scenario

from specgrove.sim.api import run_scenario


def test_summary_and_requests_are_byte_identical(tmp_path):
    scenario = small_scenario(duration_s=5.0, acceptance__mode="exact", deployment__num_replicas=2,
                              policies__router="power-of-two")
    first, second = tmp_path / "a", tmp_path / "b"
    run_scenario(scenario).write(first)
    run_scenario(scenario).write(second)
    for name in ("summary.json", "requests.csv", "scenario.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert set(json.loads((first / "run.json").read_text())) == {"wall_s", "sim_per_wall"}
