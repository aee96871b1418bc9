"""The placement flags of ``generate`` and ``bench``, spawned here and under ``torchrun``, and
their one-line errors. The demo pair (4 heads) shards two ways."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json
import os
import subprocess
import sys
from pathlib import Path

from specgrove.cli import main

PROMPT = ["--prompt", "def main():", "--max-new-tokens", "16", "--json", "--threads", "1"]


def generate(capsys, *flags):
    assert main(["generate", *PROMPT, *flags]) == 0
    return json.loads(capsys.readouterr().out.splitlines()[-1])["token_ids"]


def test_generate_on_every_placement_matches_one_process(capsys, tmp_path):
    want = generate(capsys)
    assert generate(capsys, "--tp", "2") == want
    assert generate(capsys, "--draft-placement", "separate", "--microbatches", "1") == want
    scenario = tmp_path / "cluster.toml"
    scenario.write_text('[deployment]\ntp = 2\ndraft_placement = "separate"\n')
    assert generate(capsys, "--deployment", str(scenario)) == want


def test_generate_under_torchrun(capsys):
    want = generate(capsys)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", str(_port()), "-m", "specgrove.cli",
                           "generate", *PROMPT, "--tp", "2"], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["token_ids"] == want


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("flags, message", [
    (["--tp", "3"], "--tp 3: the target's attention heads (4) is not divisible by tp=3"),
    (["--tp", "0"], "tp must be >= 1, got 0"),
    (["--microbatches", "3"], "microbatches must be 1 or 2, got 3"),
    (["--tp", "2", "--deployment", "x.toml"], "--deployment gives the placement; drop --tp"),
])
def test_bad_placements_are_one_line(capsys, flags, message):
    assert main(["generate", *PROMPT, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_deployment_files_are_one_line(capsys, tmp_path):
    cases = {
        "replicas.toml": ('[deployment]\nnum_replicas = 2\n', "only `serve` runs several replicas"),
        "gpus.toml": ('[deployment]\ndraft_placement = "separate"\ndraft_gpus = 2\n', "deployment.draft_gpus"),
        "typo.toml": ('[deployment]\ntp = "two"\n', "deployment.tp"),
        "broken.toml": ('[deployment\n', "not valid TOML"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert main(["generate", *PROMPT, "--deployment", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert main(["generate", *PROMPT, "--deployment", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read scenario" in capsys.readouterr().err


def test_bench_separate_reports_the_wire(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["def f(x):", "import sys", "class A:", "x = 1"]))
    out = tmp_path / "bench"
    assert main(["bench", "--prompts", str(prompts), "--methods", "ar,dynamic", "--batch-sizes", "4",
                 "--repeats", "1", "--max-new-tokens", "12", "--out", str(out), "--threads", "1",
                 "--draft-placement", "separate"]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["config"]["placement"].startswith("tp=1, draft=separate")
    dynamic = next(r for r in report["rows"] if r["method"] == "dynamic")
    assert dynamic["outputs_equal_ar"] == 4
    assert 0 < dynamic["wire_bytes_per_node"] < 16 + 64
    assert "bytes/step" in (out / "bench.md").read_text()
