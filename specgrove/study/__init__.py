"""``specgrove study``: how much dynamic trees (``dynamic``, ``dynamic-cost``) gain over static
trees (``static``: SpecInfer's widths, ``sequoia``, ``chain``) and plain decoding (``ar``).

Real runs measure the demo pair on this machine (``real``); simulated runs put the 7B and 70B
pairs on H100 clusters (``simulated``). ``report`` writes DIR/report.md with its figures and
the CSVs behind them; ``specgrove dashboard --study DIR`` shows the same data interactively.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from specgrove.study.settings import FULL, QUICK, Settings

__all__ = ["FULL", "QUICK", "Settings", "run_study"]


def run_study(out: Path, settings: Settings, command: str, prompts_dir: Path, threads: int = 1,
              log: Callable[[str], None] = print) -> Path:
    """Real runs, then the simulations (never at once: they would share the cores); returns
    the report's path."""
    from specgrove.study.real import run_real
    from specgrove.study.report import write_report
    from specgrove.study.simulated import run_sim, speedups

    started = time.perf_counter()
    real_rows, real_info = run_real(settings, prompts_dir, threads, log)
    sim_rows, sim_info = run_sim(settings, log)
    meta = {"command": command, "seconds": time.perf_counter() - started,
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "load_average": ", ".join(f"{x:.2f}" for x in os.getloadavg())}
    return write_report(out, settings, real_rows, real_info, sim_rows, sim_info, speedups(sim_rows), command, meta)
