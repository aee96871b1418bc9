"""Job functions for ``sweep.run_parallel`` tests: importable by spawned worker processes."""

import os


def square_or_die(job: int) -> tuple[str, int]:
    """Squares its job; job -1 kills its worker process outright (as the OOM killer would)."""
    if job == -1:
        os._exit(3)
    return "ok", job * job


def crashed(job, exc: BaseException) -> tuple[str, int]:
    return "crashed", job
