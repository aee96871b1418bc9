"""The lean runtime's matrix products: oneDNN's packed GEMM on CPU where it measures faster.

On CPU, ``F.linear`` calls MKL, which is quick for one token (a GEMV) but slow for a few rows:
on this project's 2-core x86 machine, the demo target's (256 -> 2048) head takes 50 us for
one row and 148 us for three. oneDNN with the weight reordered once into its blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``) costs a fixed ~15 us but then grows slowly with
the rows: 37 us for three, 82 us for eight. A verification forward (the root and a tree's nodes
per request) and any batched step have several rows, so they take the packed path, and a
single-token decode of a small matrix keeps MKL. The choice depends on shapes only, never on
a timing, so the same inputs always round the same way. The table behind the thresholds is
in ``docs/executor.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

GEMMS = ("auto", "torch")
# A weight is packed when it has at least this many elements (smaller ones are faster with
# MKL at every row count measured, up to 8), and a product takes the packed path from this
# many rows (one row is MKL's GEMV: faster for every matrix of the demo pair but the target's
# head, 50 us against 35, which is not worth a rule of its own).
PACK_MIN_ELEMENTS = 131_072
PACK_MIN_ROWS = 2


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class Gemm:
    """``linear(x, w, bias)`` = ``F.linear``, through a packed copy of ``w`` where one was made.

    ``mode``: ``"auto"`` packs eligible weights (float32, on CPU, oneDNN present, at least
    ``PACK_MIN_ELEMENTS``); ``"torch"`` packs nothing (plain ``F.linear`` everywhere)."""

    def __init__(self, mode: str = "auto") -> None:
        if mode not in GEMMS:
            raise ValueError(f"gemm must be one of {', '.join(GEMMS)}, got {mode!r}")
        self.mode = mode
        self._packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(w) -> (w, packed w)

    def eligible(self, w: torch.Tensor) -> bool:
        return (self.mode == "auto" and w.dim() == 2 and w.device.type == "cpu" and w.dtype == torch.float32
                and w.numel() >= PACK_MIN_ELEMENTS and onednn_available())

    def pack(self, weights: Iterable[torch.Tensor]) -> None:
        """Forget earlier packings and pack each eligible weight of ``weights`` (called again
        when the weights are replaced, as tensor-parallel sharding does)."""
        self._packed = {}
        for w in weights:
            if isinstance(w, torch.Tensor) and self.eligible(w) and id(w) not in self._packed:
                # The entry keeps ``w`` alive, so its id cannot be reused by another tensor.
                self._packed[id(w)] = (w, torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), None))

    @property
    def num_packed(self) -> int:
        return len(self._packed)

    def linear(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        entry = self._packed.get(id(w))
        if entry is not None and entry[0] is w and x.numel() >= PACK_MIN_ROWS * x.shape[-1]:
            return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, "none", [], "")
        return F.linear(x, w, bias)
