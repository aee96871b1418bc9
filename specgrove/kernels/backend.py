"""The one switch between the CuPy kernels and their torch references.

The executor holds a ``Kernels`` and calls only its three methods; which implementation runs
is decided once, here: CuPy where the device is CUDA and CuPy imports, the torch references
elsewhere. ``--kernels torch|cupy`` overrides the choice; asking for CuPy where it cannot run
is an error with its reason, never a silent fallback. The choice is logged once per device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from specgrove.kernels import _cupy
from specgrove.kernels import kv_compact as _compact
from specgrove.kernels import tree_attention as _attention
from specgrove.kernels import tree_layout as _layout

log = logging.getLogger("specgrove.kernels")

KERNEL_CHOICES = ("auto", "torch", "cupy")
_logged: set[tuple[str, str]] = set()


class KernelsUnavailable(ValueError):
    """``--kernels cupy`` where CuPy kernels cannot run; the message says why."""


@dataclass(frozen=True)
class Kernels:
    """Tree layout, ragged tree attention and KV compaction, by one implementation."""

    name: str  # "torch" or "cupy"

    def tree_layout(self, parents, query_starts, prefix_lens, rows, max_len: int | None = None):
        """Positions, cache slots, cache rows and the ancestor bitmask of a ragged batch of
        trees, on the inputs' device (``specgrove.kernels.tree_layout``)."""
        # The executor's inputs are built by the engine itself: no structural check (it syncs).
        fn = _layout.tree_layout_cupy if self.name == "cupy" else _layout.tree_layout_reference
        return fn(parents, query_starts, prefix_lens, rows, max_len=max_len, check=False)

    def attention_plan(self, layout, num_keys: int | None = None):
        """What every layer's ``tree_attention`` of one forward shares: the layout itself for
        the kernel (it reads the bitmask directly); for the torch reference, the padded mask,
        unpacked once per forward. ``num_keys`` (the largest prefix plus slice) spares the
        reference a device-to-host sync."""
        if self.name == "cupy":
            return layout
        return _attention.padded_plan(layout.query_starts, layout.prefix_lens, layout.request_rows,
                                      layout.bitmask, layout.rows.shape[0], layout.max_len, num_keys)

    def tree_attention(self, q, k_cache, v_cache, plan, scale: float | None = None):
        """Attention of the ragged queries ``q`` (T, Hq, D) over their requests' prefixes and
        tree ancestors (``specgrove.kernels.tree_attention``), given ``attention_plan``'s plan."""
        if self.name == "cupy":
            return _attention.tree_attention_cupy(q, k_cache, v_cache, plan.query_starts, plan.prefix_lens,
                                                  plan.request_rows, plan.bitmask, scale=scale, max_len=plan.max_len)
        return _attention.attend_padded(plan, q, k_cache, v_cache, scale)

    def compact(self, k, v, rows, src, dst, max_moves_per_row: int | None = None) -> None:
        """Copy slot ``src[i]`` of row ``rows[i]`` to ``dst[i]`` in every layer of K and V,
        all sources read before any destination is written (``specgrove.kernels.kv_compact``)."""
        if self.name == "cupy":
            _compact.compact_cupy(k, v, rows, src, dst, max_moves_per_row=max_moves_per_row, check=False)
        else:
            _compact.compact_reference(k, v, rows, src, dst, max_moves_per_row=max_moves_per_row, check=False)


TORCH = Kernels("torch")


def _unsupported(head_dim: int | None, dtype) -> str | None:
    """Why the CUDA attention kernel has no instance for this model's heads, or None."""
    if head_dim is not None and head_dim not in _attention.KERNEL_HEAD_DIMS:
        dims = "/".join(map(str, _attention.KERNEL_HEAD_DIMS))
        return f"the tree-attention kernel has head_dim {dims}, the model {head_dim}"
    if dtype is not None and dtype not in _attention.KERNEL_DTYPES:
        return f"the tree-attention kernel has no {dtype} instance"
    return None


def choose(device, requested: str = "auto", head_dim: int | None = None, dtype=None) -> Kernels:
    """The kernels for a model on ``device`` (a torch device or its name) with heads of
    ``head_dim`` in ``dtype`` (when given, a shape the kernel lacks counts as unavailable)."""
    if requested not in KERNEL_CHOICES:
        raise KernelsUnavailable(f"--kernels {requested!r}: expected one of {', '.join(KERNEL_CHOICES)}")
    if requested == "torch":
        reason = "asked for the torch references"
    else:
        reason = _cupy.unavailable(device) or _unsupported(head_dim, dtype)
    if requested == "cupy" and reason:
        raise KernelsUnavailable(f"--kernels cupy cannot run: {reason}")
    kernels = Kernels("torch") if reason else Kernels("cupy")
    key = (str(device), kernels.name, reason or "")
    if key not in _logged:
        _logged.add(key)
        why = f" ({reason})" if reason else ""
        log.info("kernels on %s: %s%s", device, kernels.name, why)
    return kernels
