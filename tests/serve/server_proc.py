"""Start ``specgrove serve`` as a real process on 127.0.0.1 and stop it (bounded waits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str, threads: int = 1, startup_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """A server with ``args``; one torch thread by default, the other core being the client's."""
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from specgrove.cli import main; sys.exit(main())", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads), "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"the server did not come up within {startup_s} s")


def stop(proc: subprocess.Popen, timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


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
