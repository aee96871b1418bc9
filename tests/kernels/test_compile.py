"""Every CUDA source of ``specgrove/kernels`` compiles with the machine's nvcc, warnings as
errors, for sm_80 (bf16 needs it), and with NVRTC, the run-time compiler CuPy uses, with the
options ``_cupy.module`` gives it. No GPU is needed to compile; without nvcc, or without CuPy's
NVRTC (the 'gpu' extra), the test skips, saying so."""

import shutil
import subprocess

import pytest

from specgrove.kernels import _cupy

NVCC = shutil.which("nvcc")
SOURCES = _cupy.sources()


def test_the_package_has_cuda_sources():
    assert {p.stem for p in SOURCES} >= {"tree_layout", "kv_compact", "tree_attention"}


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (install the CUDA toolkit to compile-check the kernels)")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_each_source_compiles_without_warnings(source, tmp_path):
    out = tmp_path / f"{source.stem}.ptx"
    cmd = [NVCC, "--ptx", f"-arch={_cupy.NVCC_ARCH}", "-std=c++17", "-Werror", "all-warnings",
           str(source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    assert not proc.stderr.strip(), proc.stderr  # nothing printed: not even a note
    assert ".entry" in out.read_text()  # at least one kernel came out


def test_a_broken_source_fails_the_check(tmp_path):
    """The check above can fail: nvcc with the same flags rejects a warning."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(int* x) { int unused = 1; x[0] = 0; }\n')
    cmd = [NVCC, "--ptx", f"-arch={_cupy.NVCC_ARCH}", "-std=c++17", "-Werror", "all-warnings", str(bad),
           "-o", str(tmp_path / "bad.ptx")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, "a declared-but-unused variable must fail the -Werror build"


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()  # loads libnvrtc: absent unless the toolkit or its wheel is installed
        return nvrtc
    except Exception:  # ImportError, or CuPy's own error for a missing library
        return None


NVRTC = _nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="CuPy's NVRTC does not load (install the 'gpu' extra)")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_each_source_compiles_under_nvrtc_as_cupy_loads_it(source):
    prog = NVRTC.createProgram(source.read_text(), source.name, [], [])
    try:
        NVRTC.compileProgram(prog, [*_cupy.NVRTC_OPTIONS, "-arch=compute_80"])
    except Exception as exc:
        pytest.fail(f"NVRTC rejects {source.name}: {exc}\n{NVRTC.getProgramLog(prog)}")
    assert not NVRTC.getProgramLog(prog).strip()  # no warnings either
    assert b".entry" in NVRTC.getPTX(prog)  # at least one kernel came out
