"""Input that used to run forever or be silently misread now fails with one line naming it
(a start on issue 12)."""

import pytest
from sim_scenarios import small

from specgrove.cli import main
from specgrove.sim.build import parse_scenario
from specgrove.sim.scenario import ScenarioError
from specgrove.sim.sweep import parse_vary


@pytest.mark.parametrize("overrides, message", [
    ({"workload__rate": float("inf")}, "workload.rate: Input should be a finite number"),
    ({"workload__rate": float("nan")}, "workload.rate: Input should be a finite number"),
    ({"duration_s": float("inf")}, "duration_s: Input should be a finite number"),
    ({"horizon_s": -1.0}, "horizon_s: Input should be greater than 0"),
    ({"workload__arrival": "gamma", "workload__cv": float("inf")}, "workload.cv: Input should be a finite number"),
])
def test_non_finite_and_negative_fields_are_refused(overrides, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(**overrides))
    assert str(info.value) == message


def test_toml_inf_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "inf.toml"
    bad.write_text("duration_s = inf\n")
    assert main(["sim", str(bad), "--no-progress"]) == 2
    assert capsys.readouterr().err == "specgrove: error: duration_s: Input should be a finite number\n"


def test_non_finite_trace_arrivals_are_refused(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3}\n'
                     '{"arrival_s": NaN, "prompt_tokens": 5, "output_tokens": 3}\n')
    with pytest.raises(ScenarioError, match=r"t.jsonl:2: field 'arrival_s' must be a number, got nan"):
        parse_scenario(small(workload__arrival="trace", workload__trace=str(trace)))


def test_a_repeated_vary_field_is_refused(tmp_path, capsys):
    with pytest.raises(ScenarioError, match="--vary workload.rate is given twice"):
        parse_vary(["workload.rate=1,2", "workload.rate=4"])
    scenario = tmp_path / "s.toml"
    scenario.write_text("duration_s = 1.0\n")
    assert main(["sweep", str(scenario), "--vary", "workload.rate=1", "--vary", "workload.rate=2"]) == 2
    assert "given twice" in capsys.readouterr().err
