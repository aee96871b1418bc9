"""Mapping draft confidence to acceptance, for policies that rank nodes by it.

EAGLE-2 ranks nodes by the draft's cumulative probability because, for a draft whose
probabilities are its acceptance rates, that *is* the chance the path is accepted. Small
distilled drafts are often under-confident: a draft imitating a high-entropy target spreads its
probability although its argmax usually agrees with the target's. A ``ConfidenceMap`` is the measured map from a proposal's draft
probability to its chance of acceptance (binned, piecewise constant), so a policy can rank by
estimated acceptance instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidenceMap:
    """``acceptance[r][b]``: acceptance of a rank-r proposal whose draft probability falls
    in bin b (``edges[b] <= q < edges[b+1]``); the last row serves every later rank too.

    Rank matters as well as probability: a runner-up at 0.15 usually loses to a leader at
    0.6, while a leader at 0.15 often wins. A 1-D table (one row) is the rank-blind case.
    """

    edges: tuple[float, ...]  # bin edges over [0, 1], increasing, first 0 and last 1
    acceptance: tuple[tuple[float, ...], ...]  # (ranks, bins)

    def __post_init__(self) -> None:
        edges, acc = np.asarray(self.edges, dtype=float), np.asarray(self.acceptance, dtype=float)
        if acc.ndim == 1:
            acc = acc[None, :]
            object.__setattr__(self, "acceptance", (tuple(self.acceptance),))
        if acc.ndim != 2 or len(edges) != acc.shape[1] + 1 or edges[0] != 0.0 or edges[-1] != 1.0 \
                or np.any(np.diff(edges) <= 0):
            raise ValueError("confidence map edges must increase from 0 to 1, one more than the bins")
        if np.any((acc < 0) | (acc > 1)):
            raise ValueError("confidence map values must be probabilities")
        object.__setattr__(self, "_table", acc)

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceMap:
        acc = data["acceptance"]
        rows = [acc] if acc and not isinstance(acc[0], (list, tuple)) else acc
        return cls(tuple(float(x) for x in data["edges"]), tuple(tuple(float(x) for x in r) for r in rows))

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """Scores for a (nodes, k) block of top-k probabilities, column j being rank j."""
        probs = np.asarray(probs, dtype=float)
        table = self._table
        bins = np.clip(np.searchsorted(self.edges, probs, side="right") - 1, 0, table.shape[1] - 1)
        ranks = np.minimum(np.arange(probs.shape[-1]), table.shape[0] - 1)
        return table[np.broadcast_to(ranks, probs.shape), bins]


def as_confidence_map(value: ConfidenceMap | dict | None) -> ConfidenceMap | None:
    if value is None or isinstance(value, ConfidenceMap):
        return value
    if isinstance(value, dict):
        return ConfidenceMap.from_dict(value)
    raise ValueError(f"a confidence map must be a ConfidenceMap or a dict with edges/acceptance, got {value!r}")
