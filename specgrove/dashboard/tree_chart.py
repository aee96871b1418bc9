"""A recorded token tree, drawn depth by depth: nodes coloured by whether verification
accepted them, edges from parent to child. Layout: leaves one row apart in depth-first
order, a parent centred on its children (a tidy tree); the root (the last accepted token,
not a node of the tree) at depth 0."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from specgrove.tree import children

STATUS_COLOURS = {"root": "#7f7f7f", "accepted": "#2ca02c", "rejected": "#d62728"}


def layout(parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(depth, row) of every node; parents come before children, -1 is the root."""
    n = len(parents)
    kids = children(np.asarray(parents, dtype=np.int64))
    depth = np.zeros(n, dtype=int)
    row = np.zeros(n, dtype=float)
    for i, p in enumerate(parents):
        depth[i] = 1 if p < 0 else depth[p] + 1
    # Leaves in depth-first order (an explicit stack: a chain may be thousands deep), then each
    # parent from its children; children come after their parent, so reverse order works.
    stack, next_leaf = [int(c) for c in reversed(kids[-1])], 0
    while stack:
        node = stack.pop()
        if kids[node]:
            stack.extend(int(c) for c in reversed(kids[node]))
        else:
            row[node], next_leaf = next_leaf, next_leaf + 1
    for node in range(n - 1, -1, -1):
        if kids[node]:
            ys = [row[c] for c in kids[node]]
            row[node] = (min(ys) + max(ys)) / 2
    return depth, row


def frames(parents: list[int], scores: list[float], accepted: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nodes (with the root) and edges (two rows each) of one tree."""
    depth, row = layout(parents)
    accepted_set = set(accepted)
    root_row = float(np.mean([row[i] for i, p in enumerate(parents) if p < 0])) if parents else 0.0
    nodes = [{"node": "root", "depth": 0, "row": root_row, "status": "root", "score": None}]
    edges = []
    for i, p in enumerate(parents):
        status = "accepted" if i in accepted_set else "rejected"
        nodes.append({"node": str(i), "depth": int(depth[i]), "row": float(row[i]), "status": status,
                      "score": float(scores[i]) if i < len(scores) else None})
        start = (0, root_row) if p < 0 else (int(depth[p]), float(row[p]))
        edges += [{"edge": i, "depth": start[0], "row": start[1], "status": status},
                  {"edge": i, "depth": int(depth[i]), "row": float(row[i]), "status": status}]
    return pd.DataFrame(nodes), pd.DataFrame(edges, columns=["edge", "depth", "row", "status"])


def per_depth(parents: list[int], accepted: list[int]) -> pd.DataFrame:
    """Nodes and accepted nodes at each depth."""
    depth, _ = layout(parents)
    acc = set(accepted)
    rows = [{"depth": d, "nodes": int((depth == d).sum()), "accepted": sum(1 for i in range(len(parents))
                                                                          if depth[i] == d and i in acc)}
            for d in range(1, int(depth.max()) + 1)] if len(parents) else []
    return pd.DataFrame(rows, columns=["depth", "nodes", "accepted"])


def tree_chart(parents: list[int], scores: list[float], accepted: list[int], title: str) -> alt.LayerChart:
    nodes, edges = frames(parents, scores, accepted)
    colour = alt.Color("status:N", title="node", scale=alt.Scale(domain=list(STATUS_COLOURS),
                                                                  range=list(STATUS_COLOURS.values())))
    x = alt.X("depth:Q", title="depth", axis=alt.Axis(tickMinStep=1), scale=alt.Scale(nice=False))
    y = alt.Y("row:Q", axis=None, scale=alt.Scale(reverse=True))
    lines = alt.Chart(edges).mark_line(strokeWidth=1.5).encode(x=x, y=y, detail="edge:N", color=colour)
    dots = alt.Chart(nodes).mark_circle(size=220, opacity=1).encode(
        x=x, y=y, color=colour, tooltip=["node", "depth", "status", alt.Tooltip("score:Q", format=".3f")])
    labels = alt.Chart(nodes).mark_text(dy=-12, fontSize=10).encode(x=x, y=y, text="node:N")
    height = max(160, 22 * (int(nodes["row"].max()) + 1 if len(nodes) else 1))
    return alt.layer(lines, dots, labels, title=title).properties(height=height)
