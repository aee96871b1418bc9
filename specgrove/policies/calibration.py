"""Mapping draft confidence to acceptance, for policies that rank nodes by it.

EAGLE-2 ranks nodes by the draft's cumulative probability because, for a well-calibrated draft,
that *is* the chance the path is accepted. Small distilled drafts are often not calibrated: a
draft imitating a high-entropy target spreads its probability although its argmax usually
agrees with the target's. A ``Calibration`` is the measured map from a proposal's draft
probability to its chance of acceptance (binned, piecewise constant), so a policy can rank by
estimated acceptance instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    edges: tuple[float, ...]  # bin edges over [0, 1], increasing, first 0 and last 1
    acceptance: tuple[float, ...]  # one value per bin

    def __post_init__(self) -> None:
        edges, acc = np.asarray(self.edges), np.asarray(self.acceptance)
        if len(edges) != len(acc) + 1 or edges[0] != 0.0 or edges[-1] != 1.0 or np.any(np.diff(edges) <= 0):
            raise ValueError("calibration edges must increase from 0 to 1, one more than the values")
        if np.any((acc < 0) | (acc > 1)):
            raise ValueError("calibration values must be probabilities")

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(tuple(float(x) for x in data["edges"]), tuple(float(x) for x in data["acceptance"]))

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.edges, probs, side="right") - 1, 0, len(self.acceptance) - 1)
        return np.asarray(self.acceptance)[idx]


def as_calibration(value: Calibration | dict | Sequence | None) -> Calibration | None:
    if value is None or isinstance(value, Calibration):
        return value
    if isinstance(value, dict):
        return Calibration.from_dict(value)
    raise ValueError(f"calibration must be a Calibration or a dict with edges/acceptance, got {value!r}")
