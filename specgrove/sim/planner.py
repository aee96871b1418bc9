"""Turn a running batch into one step's plan: who emits how many tokens, and how long it takes.

Newly admitted (or recomputed) requests prefill inside the same target forward as everyone
else's verification (a mixed batch, Sarathi-style) and emit their first token; decoding
requests get a tree from the acceptance model. Time comes from the cost model:

    draft_s  = sum over draft rounds r of draft_step_s(decoding, tokens_r, context)
               + draft_step_s(new, prefill tokens, 0)
    verify_s = target_forward_s(batch, prefill tokens + sum(tree size + 1), context)

where ``+ 1`` is each request's root (its last accepted token, not yet in the cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specgrove.cost import CostModel
from specgrove.sim.running_batch import RunningBatch


@dataclass
class StepPlan:
    is_prefill: np.ndarray | None  # None: nobody prefilled this step
    emitted: np.ndarray
    num_decoding: int
    num_emitted: int
    draft_s: float
    verify_s: float
    transfer_s: float
    comm_s: float
    other_s: float = 0.0  # host work outside the forwards
    tokens: int = 0  # in the target forward: prefill tokens + roots + tree nodes
    context_tokens: int = 0
    outcome: object = None  # the acceptance model's Outcome for the decoding rows


class Planner:
    def __init__(self, acceptance, cost: CostModel, rng: np.random.Generator, uses_draft: bool) -> None:
        """``uses_draft``: new prompts go through a draft forward too (prefill)."""
        self.acceptance, self.cost, self.rng, self.uses_draft = acceptance, cost, rng, uses_draft

    def prefill_s(self, num_requests: int, tokens: int) -> tuple[float, float]:
        """Seconds of a separate prefill's target forward and draft forward over ``tokens``
        prompt tokens of ``num_requests`` new requests (nothing cached yet)."""
        target_s, draft_s = self.cost.prefill_s(num_requests, tokens)
        return target_s, draft_s if self.uses_draft else 0.0

    def plan(self, b: RunningBatch) -> StepPlan:
        cost = self.cost
        n, num_new = len(b), b.num_prefill
        num_dec = n - num_new
        new = b.prefill > 0 if num_new else None
        tree_tokens, ctx, draft_s, num_nodes = 0, 0, 0.0, 0
        if num_dec == n:  # no prefill this step: no masks
            ctx = b.ctx_total()
            out = self.acceptance.step(b.dom, b.ctx, self.rng, generated=b.ctx - b.prompt)
            # Never emit past the request's end: the bonus token counts too.
            emitted = np.minimum(out.emitted, b.left)
        else:
            emitted = np.ones(n, dtype=np.int64)
            if num_dec:
                dec = ~new
                ctx = int(b.ctx[dec].sum())
                out = self.acceptance.step(b.dom[dec], b.ctx[dec], self.rng, generated=b.ctx[dec] - b.prompt[dec])
                emitted[dec] = np.minimum(out.emitted, b.left[dec])
        if num_dec:
            num_nodes = out.num_nodes
            tree_tokens = num_nodes + num_dec
            for count, tokens in out.draft_rounds:
                draft_s += count * cost.draft_step_s(num_dec, tokens, ctx)
        prefill_tokens = int(b.prefill.sum()) if num_new else 0
        if prefill_tokens and self.uses_draft:
            draft_s += cost.draft_step_s(num_new, prefill_tokens, 0)
        tokens = tree_tokens + prefill_tokens
        num_emitted = int(emitted.sum())
        return StepPlan(
            new,
            emitted,
            num_dec,
            num_emitted,
            draft_s,
            cost.target_forward_s(n, tokens, ctx),
            cost.transfer_s(num_nodes, num_emitted),
            cost.target_comm_s(tokens),
            cost.step_overhead_s(n),
            tokens,
            ctx,
            out if num_dec else None,
        )
