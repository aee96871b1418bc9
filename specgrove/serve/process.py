"""Start ``specgrove serve`` as a child process on 127.0.0.1 and stop it, with bounded waits
(used by ``specgrove validate``, the serving benchmark and the tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, threads: int = 1, startup_s: float = 180.0) -> tuple[subprocess.Popen, str]:
    """A server with ``args`` (serve's flags); returns the process and its base URL once
    /health answers."""
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from specgrove.cli import main; sys.exit(main())", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads), "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stdout.read().strip()[-500:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"the server did not come up within {startup_s} s")


def stop_server(proc: subprocess.Popen, timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
