"""Policies shared by the executor and the simulator (numpy only, never a model or SimPy).

Importing this package registers every built-in policy with ``specgrove.registry``:

* tree: ``ar``, ``chain``, ``static``, ``sequoia``, ``dynamic``, ``dynamic-cost``, ``lookup``,
  ``dynamic-lookup``;
* batch-budget: ``uniform``, ``greedy-global``;
* scheduler: ``fcfs``, ``sjf``, ``edf``;
* router: ``round-robin``, ``least-outstanding``, ``power-of-two``, ``speculation-aware``.
"""

from specgrove.policies import batch_budget, dynamic, hybrid, lookup, router, scheduler, sequoia, shape  # noqa: F401  (registers)
from specgrove.policies.base import (  # noqa: F401
    DraftTopK,
    Expansion,
    TreePolicy,
    grow_batch,
    grow_tree,
)
from specgrove.policies.speculation import Speculation, speculate  # noqa: F401
