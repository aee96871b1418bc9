"""One speculation step, the same in both worlds: grow the candidates, split the budget, select.

The executor's engine calls ``speculate`` with a draft callback that runs the real draft model;
the simulator's exact mode calls it with one that answers from synthetic distributions. Nothing
else differs, so a policy decides the same way in simulation and for real (a test feeds both
the same draft answers and compares the trees and budgets, step by step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from specgrove.policies.base import BatchDraftFn, DraftTopK, Expansion, TreePolicy, grow_batch
from specgrove.tree import Tree

# A batch-budget policy: (each request's candidate scores, the step's node total) -> shares.
BudgetSplit = Callable[[Sequence[np.ndarray], int], list[int]]
# Prompt lookup: (request index, max tokens) -> the tokens its own context proposes and the
# order of the n-gram match they come from (``NgramIndex.match``).
LookupFn = Callable[[int, int], tuple[list[int], int]]


@dataclass(frozen=True)
class Speculation:
    """What one step proposed for each request of the batch, in batch order."""

    candidates: list[Tree]  # grown trees, before the budget cut
    budgets: list[int]  # nodes each request may keep, from the batch-budget policy
    trees: list[Tree]  # the selected trees the target verifies
    round_widths: list[int]  # expanded nodes in each draft round (one draft forward each)
    catch_up_tokens: int = 0  # tokens fed beyond the roots in the first round (the executor's draft)
    # A lookup step: per request, the order of the match its chain came from (0: none; -1: a
    # request that did not take part, in a probe). Empty when the draft proposed.
    lookup_orders: tuple[int, ...] = ()

    @property
    def num_rounds(self) -> int:
        return len(self.round_widths)


def speculate(policy: TreePolicy, split: BudgetSplit, grow_budget: int, total_budget: int,
              context_tokens: Sequence[int], draft: BatchDraftFn, plan: bool = True,
              lookup: LookupFn | None = None) -> Speculation:
    """One step for a batch of ``len(context_tokens)`` decoding requests.

    ``grow_budget``: each request's growth budget; ``total_budget``: the step's node total that
    ``split`` shares out; ``context_tokens[i]``: request i's cached tokens (cost-aware
    selection weighs them). ``plan``: let the policy first choose the step's growth budget
    (``TreePolicy.step_budget``; 0 is plain decoding); off when tabulating what speculation
    yields.
    """
    widths: list[int] = []
    matches = None
    if policy.lookup_length:  # the requests' own contexts propose first: the policy weighs them
        if lookup is not None:
            matches = [lookup(i, policy.lookup_length) for i in range(len(context_tokens))]
        policy.see_matches(matches)
    if plan:
        grow_budget = policy.step_budget(grow_budget, context_tokens)
    if grow_budget <= 0:  # plain decoding this step: no draft round, empty trees
        empty = [Tree.empty()] * len(context_tokens)
        return Speculation(empty, [0] * len(context_tokens), empty, widths)

    probing = policy.probe_rows(len(context_tokens)) if plan else None
    if policy.step_lookup():  # chains from the requests' contexts, no draft round
        if matches is None:
            raise ValueError(f"{type(policy).__name__} proposes by prompt lookup, and no lookup was given")
        rows = range(len(context_tokens)) if probing is None else probing
        trees = [Tree.empty()] * len(context_tokens)
        orders = [-1] * len(context_tokens)
        for i in rows:
            tokens, orders[i] = matches[i]
            trees[i] = policy.lookup_tree(tokens[:grow_budget], orders[i], int(context_tokens[i]))
        return Speculation(trees, [len(t) for t in trees], trees, widths, lookup_orders=tuple(orders))

    def counted(ids: list[int], expansions: list[Expansion]) -> list[DraftTopK]:
        widths.append(sum(len(e.nodes) for e in expansions))
        return draft(ids, expansions)

    if probing is None:
        growths = [policy.grow(grow_budget) for _ in context_tokens]
    else:  # a probe: these requests speculate, the rest decode plainly this step
        growths = [policy.grow(grow_budget if i in probing else 0) for i in range(len(context_tokens))]
    candidates = grow_batch(growths, counted)
    if matches is not None:  # a policy that drafts and looks up at once merges the two
        rows = range(len(candidates)) if probing is None else probing
        candidates = [policy.with_lookup(c, matches[i]) if i in rows else c for i, c in enumerate(candidates)]
    budgets = [int(b) for b in split([c.cum_probs for c in candidates], total_budget)]
    trees = [policy.select(c, b, int(ctx)) for c, b, ctx in zip(candidates, budgets, context_tokens)]
    return Speculation(candidates, budgets, trees, widths)
