"""The dashboard never imports torch or the executor: every module imported, and every page
run under ``AppTest``, in a fresh interpreter that then holds neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("streamlit")

from dash_helpers import REPO  # noqa: E402

SCRIPT = r"""
import importlib, pkgutil, sys
import specgrove.dashboard as dash
from streamlit.testing.v1 import AppTest

names = [m.name for m in pkgutil.iter_modules(dash.__path__) if m.name != "app"]
for name in names:
    importlib.import_module(f"specgrove.dashboard.{name}")
importlib.import_module("specgrove.commands.dashboard")
pages = [n for n in names if n.startswith("page_")]
for name in pages:
    at = AppTest.from_string(f"from specgrove.dashboard.{name} import render\nrender()", default_timeout=120).run()
    assert not at.exception, (name, [e.value for e in at.exception])
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
assert not at.exception, [e.value for e in at.exception]
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "specgrove.executor", "transformers")))
print("PAGES", len(pages), "MODULES", len(names), "BAD", bad)
"""


def test_dashboard_imports_no_torch():
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "specgrove/dashboard/app.py")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("PAGES"))
    assert line.endswith("BAD []"), line
    assert line.startswith("PAGES 6 ")
