"""Shared by every test folder: ``strategies`` (hypothesis strategies for trees) sits here,
importable from tests/core, tests/policies and tests/executor alike."""
