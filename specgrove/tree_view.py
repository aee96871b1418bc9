"""A token tree as an indented outline, for people (``specgrove generate --show-tree``).

::

    'def'
    ├─ ' add' (0.91) ✓
    │  ├─ '(' (0.80) ✓
    │  └─ ':' (0.12)
    └─ ' sub' (0.05)

The first line is the root (the last accepted token), then every node in its parent's
subtree, children in node order, with its text (``repr`` of what ``token_text`` returns, so
spaces and newlines show), its draft probability and ``✓`` when verification accepted it.
numpy only: works on a ``specgrove.tree.Tree`` from any source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from specgrove.tree import Tree, children

UNICODE = {"tee": "├─ ", "last": "└─ ", "pipe": "│  ", "gap": "   ", "yes": " ✓"}
ASCII = {"tee": "|- ", "last": "`- ", "pipe": "|  ", "gap": "   ", "yes": " *"}


def render_tree(tree: Tree, token_text: Callable[[int], str], accepted: Iterable[int] = (),
                root: str | None = None, ascii_only: bool = False, max_nodes: int | None = None) -> str:
    """The outline of ``tree``: ``root`` (text of the root token, shown as given) on the first
    line when given, then one line per node; ``accepted`` nodes are marked. With
    ``max_nodes``, nodes past that many are left out and counted on a last line."""
    marks = ASCII if ascii_only else UNICODE
    accepted = set(int(a) for a in accepted)
    lines = [] if root is None else [repr(root)]
    if len(tree) == 0:
        lines.append("(no tree: one plain decoding step)")
        return "\n".join(lines)
    kids = children(tree.parents)
    shown = 0

    def walk(node: int, prefix: str) -> None:
        nonlocal shown
        below = kids[node]  # node -1 is the root: its children sit in the last entry
        for j, child in enumerate(below):
            if max_nodes is not None and shown >= max_nodes:
                return
            last = j == len(below) - 1
            mark = marks["yes"] if child in accepted else ""
            text = repr(token_text(int(tree.tokens[child])))
            lines.append(f"{prefix}{marks['last'] if last else marks['tee']}{text} ({tree.probs[child]:.2f}){mark}")
            shown += 1
            walk(child, prefix + (marks["gap"] if last else marks["pipe"]))

    walk(-1, "")
    if shown < len(tree):
        lines.append(f"... {len(tree) - shown} more node{'s' if len(tree) - shown > 1 else ''}")
    return "\n".join(lines)
