"""``specgrove dashboard [--port N] [--study DIR]``: the Streamlit app on 127.0.0.1.

Checks its arguments, then becomes ``streamlit run specgrove/dashboard/app.py`` (headless, on
the loopback address); open the printed URL in a browser. Needs the ``dashboard`` extra; never
imports torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from pathlib import Path

from specgrove.commands import UsageError

HOST = "127.0.0.1"
APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
STUDY_ENV = "SPECGROVE_STUDY_DIR"  # read by the Study page (dashboard/page_study.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    parser.add_argument("--study", help="a `specgrove study --out` directory for the Study page to open")


def check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if args.study is not None:
        study = Path(args.study)
        if not study.is_dir():
            raise UsageError(f"--study {args.study!r} is not a directory")
        if not (study / "report.md").is_file() or not (study / "study.json").is_file():
            raise UsageError(f"--study {args.study!r} holds no study (report.md and study.json); "
                             "`specgrove study --out DIR --quick` writes one")
    if importlib.util.find_spec("streamlit") is None:
        raise UsageError("the dashboard needs the 'dashboard' extra: pip install -e '.[dashboard]'")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, args.port))
        except OSError as exc:
            raise UsageError(f"--port {args.port}: cannot listen on {HOST} ({exc.strerror})") from None


def command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", HOST,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def run(args: argparse.Namespace) -> int:
    check(args)
    env = dict(os.environ)
    if args.study is not None:
        env[STUDY_ENV] = str(Path(args.study).resolve())
    print(f"specgrove dashboard: http://{HOST}:{args.port} (Ctrl-C stops it)", flush=True)
    # Become Streamlit (exec, not a child process): a signal to this process reaches the server,
    # and stopping it leaves nothing behind.
    os.execve(sys.executable, command(args.port), env)
