"""CuPy plumbing shared by the kernels: load a ``.cu`` file of this package as a ``RawModule``,
hand torch tensors to CuPy without a copy (DLPack), and launch on torch's current stream.

Nothing here runs without a CUDA device and CuPy; ``unavailable()`` says why in one line, so
the executor's switch can log the reason it falls back to the torch references.
"""

from __future__ import annotations

import functools
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Every .cu file here compiles with these options under NVRTC (CuPy) and under nvcc (the CI
# test compiles each one with ``nvcc --ptx`` and fails on any warning). bf16 needs sm_80.
NVRTC_OPTIONS = ("--std=c++17",)
NVCC_ARCH = "sm_80"


def sources() -> list[Path]:
    """Every CUDA source of the package."""
    return sorted(HERE.glob("*.cu"))


def unavailable(device=None) -> str | None:
    """None when CuPy kernels can run on ``device`` (a torch device); else the reason."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if device is not None and torch.device(device).type != "cuda":
        return f"device {torch.device(device)} is not CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import cupy  # noqa: F401
    except ImportError as e:  # the 'gpu' extra is not installed
        return f"cupy does not import ({e}); install the 'gpu' extra"
    return None


@functools.cache
def module(name: str):
    """The compiled ``RawModule`` of ``<name>.cu`` (compiled once per process, per device)."""
    import cupy

    return cupy.RawModule(code=(HERE / f"{name}.cu").read_text(), options=NVRTC_OPTIONS)


def kernel(module_name: str, function: str):
    return module(module_name).get_function(function)


def as_cupy(t):
    """A CuPy view of a contiguous CUDA tensor: same memory, no copy."""
    import cupy

    if not t.is_cuda:
        raise ValueError(f"expected a CUDA tensor, got one on {t.device}")
    return cupy.from_dlpack(t.detach())


def launch(fn, grid: tuple[int, ...], block: tuple[int, ...], args: tuple, shared_mem: int = 0) -> None:
    """Launch ``fn`` on torch's current stream, so it orders with the torch ops around it.

    Tensor arguments become CuPy views (DLPack, no copy) and so device pointers; scalars must
    match the kernel's signature: wrap them in ``numpy.int32``/``numpy.float32`` and so on.
    """
    import cupy
    import torch

    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    with stream:
        fn(grid, block, tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args),
           shared_mem=shared_mem)
