"""Speculative-decoding metrics as vLLM reports them, computed from step traces.

A pure function of ``StepRecord``s (numpy only, no torch), used by ``trace.summarize`` and so by
``generate --json``, ``bench`` and the study:

* ``acceptance_by_depth``: for each draft depth d = 1, 2, ... (a node whose parent is the root
  has depth 1), the accepted tree nodes at depth d over the tree nodes at depth d, over every
  request-step whose tree was recorded (``parents``). Index 0 is depth 1.
* ``acceptance_per_position``: vLLM's per-position acceptance rate: accepted nodes at depth d
  over the request-steps that drafted a recorded tree (at most one node is accepted per depth).
* ``accepted_len_hist``: how many request-steps accepted 0, 1, 2, ... tree nodes (every
  request-step, recorded tree or not).
* ``mean_accepted_len``: tree nodes accepted per request-step (vLLM's "mean acceptance length"
  counts the bonus token too: that is ``tau``).
* ``draft_acceptance_rate``: accepted tree nodes over verified tree nodes (vLLM's "draft
  acceptance rate").
* ``draft_ms_per_token`` / ``verify_ms_per_token``: draft and target (verification) time per
  emitted token; ``mean_tree_size``: verified nodes per request-step.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SPEC_KEYS = ("acceptance_by_depth", "acceptance_per_position", "accepted_len_hist", "mean_accepted_len",
             "draft_acceptance_rate", "draft_ms_per_token", "verify_ms_per_token", "mean_tree_size")


def node_depths(parents) -> np.ndarray:
    """Each node's depth (1 for a child of the root, ``parents[i] == -1``); parents may come in
    any order, as long as they form a tree."""
    parents = np.asarray(parents, dtype=np.int64)
    depth = np.zeros(len(parents), dtype=np.int64)
    for i in range(len(parents)):
        if depth[i]:
            continue
        chain = []
        j = i
        while j >= 0 and not depth[j]:
            chain.append(j)
            j = int(parents[j])
        d = 0 if j < 0 else int(depth[j])
        for k in reversed(chain):
            d += 1
            depth[k] = d
    return depth


def spec_decode_metrics(steps: Iterable) -> dict:
    """The metrics above over ``steps`` (``trace.StepRecord``s); rates are None where nothing
    was drafted."""
    steps = list(steps)
    shares = [r for s in steps for r in s.requests]
    nodes = np.zeros(0, dtype=np.int64)
    accepted = np.zeros(0, dtype=np.int64)
    trees = 0
    for r in shares:
        if not r.parents:
            continue
        trees += 1
        depth = node_depths(r.parents)
        nodes = _add(nodes, np.bincount(depth - 1))
        if r.accepted_nodes:
            accepted = _add(accepted, np.bincount(depth[list(r.accepted_nodes)] - 1))
    accepted = _add(accepted, np.zeros(len(nodes), dtype=np.int64))
    lens = np.array([r.accepted_len for r in shares], dtype=np.int64)
    tree_nodes = sum(r.tree_size for r in shares)
    emitted = sum(r.emitted for r in shares)
    return {
        "acceptance_by_depth": [float(a / n) for a, n in zip(accepted, nodes)],
        "acceptance_per_position": [float(a / trees) for a in accepted] if trees else [],
        "accepted_len_hist": np.bincount(lens).tolist() if len(lens) else [],
        "mean_accepted_len": float(lens.mean()) if len(lens) else None,
        "draft_acceptance_rate": float(lens.sum() / tree_nodes) if tree_nodes else None,
        "draft_ms_per_token": sum(s.draft_ms for s in steps) / emitted if emitted else None,
        "verify_ms_per_token": sum(s.verify_ms for s in steps) / emitted if emitted else None,
        "mean_tree_size": tree_nodes / len(shares) if shares else 0.0,
    }


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = max(len(a), len(b))
    return np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b)))
