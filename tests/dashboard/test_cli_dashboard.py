"""``specgrove dashboard``: bad input is one line and exit 2; the command runs Streamlit on
127.0.0.1, headless."""

from __future__ import annotations

import socket
import sys

import pytest

from specgrove.cli import main
from specgrove.commands import dashboard


def run(capsys, *argv) -> tuple[int, str]:
    rc = main(["dashboard", *argv])
    err = capsys.readouterr().err
    return rc, err


def test_bad_port(capsys):
    rc, err = run(capsys, "--port", "70000")
    assert rc == 2 and err.strip() == "specgrove: error: --port must be in 1..65535, got 70000"


def test_missing_study_dir(capsys, tmp_path):
    rc, err = run(capsys, "--study", str(tmp_path / "nope"))
    assert rc == 2 and err.count("\n") == 1 and "is not a directory" in err
    rc, err = run(capsys, "--study", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "holds no study" in err


def test_port_in_use(capsys):
    pytest.importorskip("streamlit")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        rc, err = run(capsys, "--port", str(s.getsockname()[1]))
    assert rc == 2 and err.count("\n") == 1 and "cannot listen on 127.0.0.1" in err


def test_streamlit_command():
    cmd = dashboard.command(8600)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith("specgrove/dashboard/app.py")
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.headless"] == "true"
    assert flags["--server.port"] == "8600"
