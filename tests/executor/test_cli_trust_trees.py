"""Issue 12 on the tree knobs and the tree view: ``--topk``/``--depth`` refused where a method does
not take them or out of range, fed to the tree options and shaping the trees drafted, and
``--show-tree`` printing the first steps' trees."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import json

from cli_checks import no_loading, one_line_error, pair_args, paths  # noqa: F401 (fixtures)

from specgrove.cli import main


# ---- 5. tree knobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, knob", [("chain", "--topk"), ("ar", "--depth"), ("static", "--depth"),
                                          ("sequoia", "--topk")])
def test_a_knob_the_method_does_not_take_is_refused(capsys, no_loading, method, knob):
    one_line_error(capsys, ["generate", "--prompt", "x", "--method", method, knob, "3"],
                   f"{knob} does not apply to method {method}")


def test_bench_refuses_a_knob_no_method_takes(tmp_path, capsys, no_loading):
    one_line_error(capsys, ["bench", "--prompts", "p.jsonl", "--out", str(tmp_path / "o"), "--methods", "ar,static",
                            "--topk", "2"], "--topk does not apply to methods ar, static")


@pytest.mark.parametrize("knob, value", [("--topk", "0"), ("--depth", "-1"), ("--depth", "5000")])
def test_knobs_out_of_range(capsys, no_loading, knob, value):
    one_line_error(capsys, ["generate", "--prompt", "x", knob, value], f"{knob} must be in 1..1024, got {value}")


def test_topk_past_the_vocabulary(paths, capsys):
    one_line_error(capsys, ["generate", *pair_args(paths), "--prompt", "x", "--topk", "1000"],
                   "--topk 1000 exceeds the vocabulary")


def test_knobs_feed_the_tree_options():
    from specgrove.executor.methods import applicable_knobs, knob_options

    assert knob_options("dynamic", {"topk": 8, "depth": 3}) == {"topk": 8, "max_depth": 3}
    assert knob_options("chain", {"topk": None, "depth": 3}) == {"length": 3}
    assert knob_options("sequoia", {"depth": 5}) == {"max_depth": 5}
    with pytest.raises(ValueError, match="--topk does not apply to method 'sequoia'"):
        knob_options("sequoia", {"topk": 2})
    assert applicable_knobs("sequoia", {"topk": 2, "depth": 5}) == {"depth": 5}


@pytest.mark.parametrize("method, flags, depth, size", [("dynamic", ["--depth", "2", "--topk", "2"], 2, 6),
                                                        ("chain", ["--depth", "2"], 2, 2)])
def test_knobs_shape_the_trees(paths, capsys, tmp_path, method, flags, depth, size):
    trace = tmp_path / "t.jsonl"
    assert main(["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "6", "--method",
                 method, "--json", "--trace", str(trace), *flags]) == 0
    steps = [json.loads(line) for line in trace.read_text().splitlines() if '"kind": "step"' in line]
    shares = [r for s in steps for r in s["requests"]]
    assert shares and max(r["depth"] for r in shares) == depth and max(r["tree_size"] for r in shares) <= size


def test_depth_caps_the_lookup_chains(paths, tmp_path):
    trace = tmp_path / "t.jsonl"
    assert main(["generate", *pair_args(paths), "--prompt", "a b a b a b a b a", "--max-new-tokens", "12",
                 "--method", "lookup", "--trace", str(trace), "--depth", "1"]) == 0
    steps = [json.loads(line) for line in trace.read_text().splitlines() if '"kind": "step"' in line]
    shares = [r for s in steps for r in s["requests"]]
    assert shares and all(r["tree_size"] <= 1 and r["lookup_order"] >= 0 for r in shares)


# ---- 6. see the tree ----------------------------------------------------------------------------------


def test_generate_shows_the_first_trees(paths, capsys):
    assert main(["generate", *pair_args(paths), "--prompt", "def add(a, b):", "--max-new-tokens", "6",
                 "--show-tree", "2", "--budget", "4"]) == 0
    out = capsys.readouterr().out
    text, _, trees = out.partition("\nstep 0: ")
    assert text.startswith("def add(a, b):") and trees
    assert "\nstep 1: " in trees and "\nstep 2: " not in trees
    outline = trees.split("\n\n")[0].splitlines()
    assert outline[0].endswith("emitted") and outline[1].startswith("'")  # the header, then the root
    assert sum(line.lstrip("│ ").startswith(("├─ ", "└─ ")) for line in outline[2:]) == 4  # --budget 4 nodes


def test_show_tree_refuses_json(capsys, no_loading):
    one_line_error(capsys, ["generate", "--prompt", "x", "--show-tree", "--json"], "--show-tree prints text; drop --json")
