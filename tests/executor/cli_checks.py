"""Shared by the ``test_cli_trust_*`` files: the saved demo-sized pair and its command-line
arguments, a check that a command fails with one line and exit 2, and a guard that the models
are never loaded (for checks that must come before loading)."""

import json
from pathlib import Path

import pytest
from saved_pair import make_pair

from specgrove.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("pair"))


def pair_args(paths, target="target", draft="draft"):
    return ["--target", str(paths[target]), "--draft", str(paths[draft])]


def one_line_error(capsys, argv, message):
    """``argv`` exits 2 with exactly one stderr line, ``specgrove: error: ...`` holding ``message``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("specgrove: error:"), err
    assert message in err[0], err[0]
    return err[0]


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a pair fails the test: the checks under test must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("the models were loaded before the check")

    monkeypatch.setattr("specgrove.executor.loading.load_pair", boom)


def write_prompts(path: Path, texts=("def add(a, b):", "class Point:")) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path
