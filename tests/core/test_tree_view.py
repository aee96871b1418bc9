"""The ASCII/Unicode outline of a token tree (``generate --show-tree``): golden outputs."""

import numpy as np

from specgrove.tree import Tree
from specgrove.tree_view import render_tree

VOCAB = {0: "def", 1: " add", 2: "(", 3: ":", 4: " sub", 5: "\n", 6: " a"}

# root 'def' -> ' add' (0) -> '(' (1) -> ' a' (4)
#                          -> ':' (2)
#            -> ' sub' (3) -> '\n' (5)
TREE = Tree(parents=np.array([-1, 0, 0, -1, 1, 3]), tokens=np.array([1, 2, 3, 4, 6, 5]),
            probs=np.array([0.91, 0.8, 0.125, 0.05, 0.5, 1.0]))


def test_golden_unicode_outline():
    out = render_tree(TREE, VOCAB.__getitem__, accepted=[0, 1], root="def")
    assert out == (
        "'def'\n"
        "├─ ' add' (0.91) ✓\n"
        "│  ├─ '(' (0.80) ✓\n"
        "│  │  └─ ' a' (0.50)\n"
        "│  └─ ':' (0.12)\n"
        "└─ ' sub' (0.05)\n"
        "   └─ '\\n' (1.00)"
    )


def test_golden_ascii_outline_without_root_and_cut():
    out = render_tree(TREE, VOCAB.__getitem__, accepted=np.array([3]), ascii_only=True, max_nodes=4)
    assert out == (
        "|- ' add' (0.91)\n"
        "|  |- '(' (0.80)\n"
        "|  |  `- ' a' (0.50)\n"
        "|  `- ':' (0.12)\n"
        "... 2 more nodes"
    )


def test_empty_tree_and_single_node():
    assert render_tree(Tree.empty(), str, root="x") == "'x'\n(no tree: one plain decoding step)"
    one = Tree(np.array([-1]), np.array([7]), np.array([0.25]))
    assert render_tree(one, lambda t: f"<{t}>", accepted=[0]) == "└─ '<7>' (0.25) ✓"
