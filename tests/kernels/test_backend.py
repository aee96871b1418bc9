"""The one switch between the CuPy kernels and the torch references: torch wherever CuPy cannot
run, CuPy refused with its reason when asked for there, the choice logged once; and the
``--kernels`` flag of the executor's commands."""

import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the kernels' references need torch (the 'executor' extra)")

from specgrove.cli import main  # noqa: E402
from specgrove.kernels import _cupy, backend  # noqa: E402

NO_CUPY = _cupy.unavailable("cuda")
PROMPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "prompts" / "code.jsonl"


def test_cpu_gets_the_torch_references():
    assert backend.choose("cpu").name == "torch"
    assert backend.choose("cpu", "torch").name == "torch"
    assert _cupy.unavailable("cpu") == "device cpu is not CUDA"


def test_asking_for_cupy_where_it_cannot_run_says_why():
    with pytest.raises(backend.KernelsUnavailable, match="--kernels cupy cannot run: device cpu is not CUDA"):
        backend.choose("cpu", "cupy")
    with pytest.raises(backend.KernelsUnavailable, match="expected one of auto, torch, cupy"):
        backend.choose("cpu", "triton")


@pytest.mark.skipif(NO_CUPY is not None, reason=f"CuPy kernels cannot run here: {NO_CUPY}")
def test_a_head_dim_the_kernel_lacks_falls_back_unless_cupy_is_asked_for():
    assert backend.choose("cuda", "auto", head_dim=80, dtype=torch.float16).name == "torch"
    with pytest.raises(backend.KernelsUnavailable, match="head_dim 64/128, the model 80"):
        backend.choose("cuda", "cupy", head_dim=80, dtype=torch.float16)


def test_the_kernels_shapes_are_named_in_the_reason():
    assert backend._unsupported(128, torch.bfloat16) is None
    assert backend._unsupported(80, torch.float16) == "the tree-attention kernel has head_dim 64/128, the model 80"
    assert "float64" in backend._unsupported(64, torch.float64)


def test_the_choice_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(backend, "_logged", set())
    with caplog.at_level(logging.INFO, logger="specgrove.kernels"):
        for _ in range(3):
            backend.choose("cpu")
    lines = [r.getMessage() for r in caplog.records if r.name == "specgrove.kernels"]
    assert lines == ["kernels on cpu: torch (device cpu is not CUDA)"]


@pytest.mark.skipif(NO_CUPY is not None, reason=f"CuPy kernels cannot run here: {NO_CUPY}")
def test_cuda_with_cupy_gets_the_kernels():
    assert backend.choose("cuda").name == "cupy"


@pytest.mark.parametrize("command", ["generate", "bench"])
def test_kernels_cupy_on_cpu_is_one_line(command, capsys, tmp_path):
    args = [command, "--kernels", "cupy", "--max-new-tokens", "4"]
    args += ["--prompt", "x"] if command == "generate" else [
        "--methods", "ar", "--batch-sizes", "1", "--prompts", str(PROMPTS), "--out", str(tmp_path / "b")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["specgrove: error: --kernels cupy cannot run on --device cpu: device cpu is not CUDA"]


def test_an_unknown_kernels_choice_is_refused(capsys):
    assert main(["generate", "--kernels", "triton", "--prompt", "x"]) == 2
    assert "invalid choice: 'triton'" in capsys.readouterr().err
