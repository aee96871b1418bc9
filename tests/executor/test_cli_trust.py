"""Decoding flags that are not numbers in range fail with one line (a start on issue 12)."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

from specgrove.cli import main


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_generate_refuses_a_non_finite_or_negative_temperature(value, capsys):
    assert main(["generate", "--prompt", "x", "--temperature", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("specgrove: error: --temperature must be >= 0 and finite, got ") and err.count("\n") == 1
