"""Executor tests: torch required. Each test module starts with ``pytest.importorskip("torch")``,
so on a light install (no 'executor' extra) they are reported as skipped, not as errors."""

import importlib.util

import pytest


def pytest_configure(config):
    if importlib.util.find_spec("torch") is not None:
        import torch

        # Tiny models are all per-op overhead; one thread avoids spin-waiting against other
        # work on a 2-core machine and keeps timings of the suite stable.
        torch.set_num_threads(1)


@pytest.fixture(params=["llama", "qwen2", "mistral", "gpt2"])
def family(request):
    return request.param
