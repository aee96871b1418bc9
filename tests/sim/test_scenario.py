"""Bad scenarios fail at load with one line naming the field; the CLI exits 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from sim_scenarios import small

from specgrove import registry
from specgrove.cli import main
from specgrove.sim.build import load_scenario, parse_scenario
from specgrove.sim.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def error_for(**overrides) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(small(**overrides))
    return str(info.value)


def test_unknown_tree_policy_names_field_and_lists_valid():
    valid = ", ".join(registry.names("tree"))
    assert error_for(policies__tree="foo") == f"policies.tree: unknown tree policy 'foo'; valid: {valid}"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"workload__rate": -1.0}, "workload.rate: must be > 0"),
        ({"workload__rate": 0}, "workload.rate: must be > 0"),
        ({"deployment__tp": 3}, "deployment.tp: 3 does not divide gpus_per_node 8"),
        ({"cluster__gpu": "H900"}, "cluster.gpu: unknown gpu preset 'H900'; valid: "),
        ({"cluster__intra_link": "carrier-pigeon"}, "cluster.intra_link: unknown link preset"),
        ({"models__pair": "gpt-5/nano"}, "models.pair: unknown model pair 'gpt-5/nano'"),
        ({"policies__router": "random"}, "policies.router: unknown router policy 'random'; valid: "),
        ({"policies__scheduler": "lifo"}, "policies.scheduler: unknown scheduler policy 'lifo'"),
        ({"policies__batch_budget": "all"}, "policies.batch_budget: unknown batch-budget policy 'all'"),
        ({"policies__tree_options": {"depth": 3}}, "policies.tree_options: "),
        ({"workload__rat": 3.0}, "workload.rat: unknown field"),
        ({"workload__arrival": "weibull"}, "workload.arrival: Input should be"),
        ({"workload__prompt": {"dist": "uniform", "low": 9, "high": 3}}, "workload.prompt: low 9 > high 3"),
        ({"deployment__num_replicas": 3, "deployment__tp": 4}, "deployment.num_replicas: 3 replicas need 12 GPUs; the cluster has 8"),
        ({"cluster__gpu": "A10", "models__pair": "llama-2-70b/7b"}, "deployment.tp: llama-2-70b does not fit on 1 x A10"),
        ({"acceptance__mode": "magic"}, "acceptance.mode: Input should be 'exact' or 'tabulated'"),
        ({"workload__arrival": "trace"}, "workload.trace: arrival = 'trace' needs a trace file"),
    ],
)
def test_named_field_errors(overrides, expected):
    assert error_for(**overrides).startswith(expected)


def test_bad_trace_line_names_file_and_line(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 3}\n{"arrival_s": 1, "prompt_tokens": "x", "output_tokens": 3}\n')
    msg = error_for(workload__arrival="trace", workload__trace=str(trace))
    assert msg == f"workload.trace: {trace}:2: field 'prompt_tokens' must be an integer, got 'x'"
    trace.write_text('{"arrival_s": 2, "prompt_tokens": 5, "output_tokens": 3}\n{"arrival_s": 1, "prompt_tokens": 5, "output_tokens": 3}\n')
    assert "t.jsonl:2: arrival_s 1 goes back in time" in error_for(workload__arrival="trace", workload__trace=str(trace))


def test_examples_load():
    for path in sorted((ROOT / "examples").glob("*.toml")):
        load_scenario(path)


def test_cli_bad_scenario_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[workload]\nrate = -2.0\n')
    assert main(["sim", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "specgrove: error: workload.rate: must be > 0\n"
    bad.write_text('[policies]\ntree = "foo"\n')
    assert main(["sim", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("specgrove: error: policies.tree: unknown tree policy 'foo'; valid: ")
    assert main(["sweep", str(bad), "--vary", "workload.rate=1,2"]) == 2


# The CLI in a fresh interpreter, as a user runs it.
CLI = [sys.executable, "-c", "import sys; from specgrove.cli import main; sys.exit(main())"]


def test_cli_sim_writes_outputs_in_a_subprocess(tmp_path):
    proc = subprocess.run(
        [*CLI, "sim", str(ROOT / "examples" / "demo_cpu.toml"), "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "throughput" in proc.stdout
    for name in ("summary.json", "requests.csv", "scenario.json"):
        assert (tmp_path / name).exists()
    bad = subprocess.run([*CLI, "sim", str(tmp_path / "missing.toml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
