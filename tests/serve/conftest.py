"""One demo-pair server for the serve and load tests (started once, stopped at the end)."""

import importlib.util

import pytest

HAS_SERVER_DEPS = all(importlib.util.find_spec(m) for m in ("torch", "fastapi", "uvicorn", "httpx"))


@pytest.fixture(scope="session")
def server():
    from server_proc import running

    with running("--method", "dynamic", "--max-batch", "16", "--max-queue", "256") as (_proc, url):
        yield url


@pytest.fixture(scope="session")
def pair():
    from specgrove.executor.loading import load_pair

    return load_pair()
