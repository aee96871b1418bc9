"""Test helpers around ``specgrove.serve.process``: a server as a context manager, and one
metric read from /metrics."""

from __future__ import annotations

from contextlib import contextmanager

import httpx

from specgrove.serve.process import free_port, start_server, stop_server  # noqa: F401

start, stop = start_server, stop_server


@contextmanager
def running(*args: str):
    proc, url = start(*args)
    try:
        yield proc, url
    finally:
        stop(proc)


def metric(url: str, name: str) -> float:
    """One sample's value from /metrics (the first line that starts with ``name``)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
