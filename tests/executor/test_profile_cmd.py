"""``specgrove profile``: a shape with random weights timed on a small grid, the fit and the
roofline's error written; bad shapes and devices are one line, exit 2."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json

from specgrove.cli import main


def test_profile_a_small_shape(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["profile", "--shape", "demo-draft", "--random-weights", "--batches", "1,2", "--tokens", "1,4",
                 "--contexts", "16", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads((out / "profile.json").read_text())
    assert json.loads((out / "manifest.json").read_text())["command"].startswith("specgrove profile")
    assert len(data["points"]) == 4 and data["gpu_preset"] == "cpu-2core"
    assert all(p["measured_s"] > 0 and p["roofline_s"] > 0 for p in data["points"])
    assert set(data["fit"]) == {"target_base_s", "target_per_request_s", "target_per_token_s", "target_per_context_token_s"}
    assert "roofline error" in (out / "profile.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--shape", "gpt-9"], "--shape: unknown model preset 'gpt-9'"),
    (["--device", "tpu9"], "--device must be cpu, cuda or cuda:N"),
    (["--batches", "0"], "--batches must list integers >= 1"),
])
def test_bad_profile_arguments(tmp_path, capsys, argv, message):
    assert main(["profile", "--random-weights", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
