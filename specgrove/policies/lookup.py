"""Prompt lookup: proposals copied from the request's own context, at no draft cost.

Code and other repetitive text often continue the way an earlier stretch of the same context
went on (an identifier, a call, a line already written once). Prompt lookup decoding
(Saxena, 2023; vLLM's ``ngram`` speculator, SGLang's n-gram drafter) finds the latest earlier
occurrence of the context's last n tokens, longest n first, and proposes the tokens that
followed it. Verification is the same as for any tree: the proposal is a chain of
deterministic children (q = one-hot), so greedy output and the sampled distribution stay the
target's exactly.

``NgramIndex`` keeps, per n-gram of the context, where it last ended, updated as tokens
arrive, so a lookup costs a few dictionary probes, not a scan of the context. ``Lookup`` is the
fixed method (``lookup``): every step, every request proposes up to ``length`` tokens this way,
and a request whose context has no match decodes plainly. ``dynamic-cost`` offers the same
proposals as one of its shapes, priced like the others.
"""

from __future__ import annotations

from specgrove.policies.base import TreeGrowth, TreePolicy
from specgrove.registry import register
from specgrove.tree import Tree
import numpy as np


class NgramIndex:
    """The context of one request, with the latest end of each of its n-grams (n <= ``max_n``).

    ``match(k)``: up to ``k`` tokens that followed the latest earlier occurrence of the
    context's last n tokens, for the largest n in ``min_n..max_n`` that occurred before, and
    that n (the match's order; 0 and no tokens when none occurred).
    """

    def __init__(self, max_n: int = 3, min_n: int = 1) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min_n <= max_n, got {min_n}..{max_n}")
        self.max_n, self.min_n = max_n, min_n
        self.tokens: list[int] = []
        # n-gram -> the index just after its latest occurrence that is followed by a token
        # (so the context's own last n-gram is not its own match).
        self._after: dict[tuple[int, ...], int] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, new: list[int]) -> None:
        """Append tokens to the context."""
        toks = self.tokens
        for tok in new:
            # The n-grams ending at the current last token now have a follower: ``tok``.
            end = len(toks)
            for n in range(1, min(self.max_n, end) + 1):
                self._after[tuple(toks[end - n:end])] = end
            toks.append(int(tok))

    def match(self, k: int) -> tuple[list[int], int]:
        toks = self.tokens
        if k <= 0:
            return [], 0
        for n in range(min(self.max_n, len(toks)), self.min_n - 1, -1):
            at = self._after.get(tuple(toks[len(toks) - n:]))
            if at is not None:
                return toks[at:at + k], n
        return [], 0


def chain_tree(tokens: list[int]) -> Tree:
    """A chain of deterministic proposals (each the only child of the one before, score 1)."""
    n = len(tokens)
    return Tree(np.arange(-1, n - 1, dtype=np.int64), np.asarray(tokens, dtype=np.int64), np.ones(n))


@register("tree", "lookup")
class Lookup(TreePolicy):
    """Prompt lookup decoding: each request's chain is copied from its own context."""

    drafts = False  # the draft model is never asked: no prefill, nothing to catch up

    def __init__(self, length: int = 4, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if length < 1:
            raise ValueError(f"lookup length must be >= 1, got {length}")
        NgramIndex(max_ngram, min_ngram)  # checks the sizes
        self.lookup_length, self.max_ngram, self.min_ngram = length, max_ngram, min_ngram

    def step_lookup(self) -> bool:
        return True

    def lookup_tree(self, tokens: list[int], order: int, context_tokens: int = 0) -> Tree:
        return chain_tree(tokens)  # the whole match, as vLLM's n-gram speculator proposes it

    def grow(self, budget: int) -> TreeGrowth:
        raise TypeError("lookup proposes from the request's context (speculate's lookup), not the draft")
        yield  # a generator, like every policy's grow
