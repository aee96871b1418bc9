"""``dynamic-lookup``: EAGLE-2 trees with each request's prompt-lookup chain merged in.

The draft and the request's own context propose differently: the draft generalises, the
context repeats itself (an identifier, a call, a line written once already). ``dynamic``
spends the whole budget on the draft's guesses; ``lookup`` on the context's. Here both
compete for the same budget, per request and per step: the draft grows its tree as
``dynamic`` does, the request's match (``specgrove.policies.lookup``) is merged in as a
path from the root (``merge_chain``), each of its tokens scored by how often a token at that
depth of a match of that order has been accepted, and the budget keeps the best nodes of
both, ranked alike by their chance of acceptance. Where a lookup token is also one of the
draft's, the node keeps the higher of the two chances.

Lossless as any tree: every child is chosen deterministically (top-k, or copied from the
context), so verification takes q = one-hot for each, greedy and sampled alike.
"""

from __future__ import annotations

from specgrove.policies.confidence import ConfidenceMap
from specgrove.policies.dynamic import Dynamic
from specgrove.policies.lookup import LearnsLookup, merge_chain
from specgrove.registry import register
from specgrove.tree import Tree


@register("tree", "dynamic-lookup")
class DynamicLookup(LearnsLookup, Dynamic):
    """``dynamic`` growth; the request's lookup match (up to ``lookup_length`` tokens) merged
    into its candidates before the budget cut. The match's per-order, per-depth acceptance is
    learnt from every step's emitted tokens (the executor's default), or known and kept
    (``lookup_accept``: the simulator's lookup law), so that both worlds given the same chances
    decide alike."""

    observes_steps = True  # the matches' acceptance is learnt from the emitted tokens

    def __init__(self, topk: int = 4, frontier: int = 4, max_depth: int = 6,
                 confidence: ConfidenceMap | dict | None = None, lookup_length: int = 8,
                 lookup_accept: list[list[float]] | None = None) -> None:
        super().__init__(topk=topk, frontier=frontier, max_depth=max_depth, confidence=confidence)
        if lookup_length < 1:
            raise ValueError(f"dynamic-lookup lookup_length must be >= 1, got {lookup_length}")
        self.lookup_length = lookup_length
        self.start_lookup("dynamic-lookup", lookup_length, lookup_accept)
        self._learns = lookup_accept is None

    def with_lookup(self, candidates: Tree, match: tuple[list[int], int]) -> Tree:
        tokens, order = match
        if not order or not len(tokens):
            return candidates
        tokens = list(tokens[: self.lookup_length])
        return merge_chain(candidates, tokens, self.lookup_acceptance.scores(order, len(tokens)))

    def observe_step(self, timing) -> None:
        if self._learns:
            self.learn_lookup(timing)
