"""``specgrove showcase``: every policy lossless on the synthetic pair; ``--show-tree`` draws each
policy's first tree with its accepted path, and the note on dynamic's greedy tau appears when
(and only when) dynamic trails chain."""

import pytest

pytest.importorskip("torch", reason="showcase verifies with the executor's torch code")

import re

from specgrove.cli import main


def test_showcase_draws_the_trees_and_explains_dynamic(capsys):
    assert main(["showcase", "--tokens", "60", "--show-tree"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+)\s+\d+\.\d\s+(\d+\.\d+)", out, re.M)}
    assert "NO" not in out  # every policy's greedy output equals ar's
    assert ("note: dynamic's greedy tau is below chain's" in out) == (rows["dynamic"] < rows["chain"])
    block = out.split("\nchain: first step, ", 1)[1].split("\n\n", 1)[0]
    accepted = int(block.split(" accepted")[0].split(", ")[-1])
    assert block.count("✓") == accepted > 0  # the marks are the verdict's accepted nodes
    assert "ar: first step, 0 nodes" in out and "(no tree: one plain decoding step)" in out
