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

import numpy as np

from specgrove.policies.base import TreeGrowth, TreePolicy
from specgrove.registry import register
from specgrove.tree import Tree


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


class LookupAcceptance:
    """How often lookup tokens are accepted: per match order n and depth j, (accepted, reached)
    counts, pseudo-counted from ``prior`` (two observations) or, with ``known`` chances per
    order (the simulator's), from those (fifty). A node's score is the chance that it and every
    node above it are accepted.

    ``learn`` scores a step's matches against the tokens the step emitted, whatever the step
    verified: the emitted tokens are the target's own choices (its argmax, or a sample of its
    distribution, whose chance of being x is what accepting a proposed x takes), so lookup is
    valued from every step, at no cost."""

    def __init__(self, max_order: int, length: int, prior: float = 0.5,
                 known: list[list[float]] | None = None) -> None:
        self.counts = np.zeros((max_order + 1, max(length, 1), 2))
        self.counts[:, :, 0] = prior * 2.0
        self.counts[:, :, 1] = 2.0
        if known is not None:
            if len(known) > max_order or any(not a or any(not 0 <= p <= 1 for p in a) for a in known):
                raise ValueError(f"lookup_accept must give, per match order 1..{max_order}, chances in [0, 1]")
            for n, chances in enumerate(known, start=1):
                depth = np.minimum(np.arange(self.counts.shape[1]), len(chances) - 1)
                self.counts[n, :, 0] = 50.0 * np.asarray(chances)[depth]
                self.counts[n, :, 1] = 50.0
        self._cache: dict[int, list[float]] = {}  # order -> the scores of a full chain

    def scores(self, order: int, length: int) -> list[float]:
        """The scores of a chain of ``length`` tokens from a match of ``order`` (plain Python
        numbers, kept per order until the counts change: a step weighs every request's match)."""
        scores = self._cache.get(order)
        if scores is None:
            accepted, reached = self.counts[order].T
            scores = self._cache[order] = np.cumprod(accepted / reached).tolist()
        return scores[:length]

    def learn(self, matches: list[tuple[list[int], int]], emitted) -> None:
        """Score each request's match against what it emitted: per order and depth, a token is
        reached when every token above it matched, and accepted when it matches too; the
        emitted tokens end where the step's knowledge ends."""
        counts = self.counts
        self._cache.clear()
        for (tokens, order), out in zip(matches, emitted):
            for j, (tok, real) in enumerate(zip(tokens, out)):
                counts[order, j, 1] += 1.0
                if tok != real:
                    break
                counts[order, j, 0] += 1.0


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


class LearnsLookup:
    """For a tree policy shown each step's prompt-lookup matches (``see_matches``) that scores
    them by a ``LookupAcceptance`` learnt from the step's emitted tokens (``learn_lookup``, from
    its ``observe_step``). ``start_lookup`` sets it up in the policy's ``__init__``."""

    lookup_prior = 0.5  # a lookup token's chance of acceptance before any is scored

    def start_lookup(self, name: str, length: int, known: list[list[float]] | None) -> None:
        try:
            self.lookup_acceptance = LookupAcceptance(self.max_ngram, length, self.lookup_prior, known)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
        self._matches: list[tuple[list[int], int]] | None = None  # this step's matches

    def see_matches(self, matches: list[tuple[list[int], int]] | None) -> None:
        self._matches = matches

    def learn_lookup(self, timing) -> None:
        if self._matches and timing.emitted:
            self.lookup_acceptance.learn(self._matches, timing.emitted)


def merge_chain(tree: Tree, tokens: list[int], scores: list[float]) -> Tree:
    """``tree`` with a lookup chain merged in below the root: where the chain's next token is
    already a child of the path so far, that node's score (its cumulative probability, the
    chance the policy ranks it by) becomes the higher of the two; where it is not, the rest of
    the chain hangs there as new nodes, appended after the tree's own (so the tree is a prefix
    of the result). ``scores[j]``: the chain's j-th token's cumulative chance. Scores still
    never rise from parent to child, so the best-first selection stays closed under ancestors."""
    if not len(tokens):
        return tree
    parents, labels = tree.parents.tolist(), tree.tokens.tolist()
    cum = tree.cum_probs.tolist()
    child = {(p, t): i for i, (p, t) in enumerate(zip(parents, labels))}
    node = -1
    for tok, score in zip(tokens, scores):
        at = child.get((node, int(tok)))
        if at is None:  # the chain leaves the tree: its score, capped by the path above it
            parents.append(node)
            labels.append(int(tok))
            cum.append(min(score, cum[node]) if node >= 0 else score)
            at = child[(node, int(tok))] = len(parents) - 1
        elif score > cum[at]:
            cum[at] = min(score, cum[node]) if node >= 0 else score
        node = at
    probs = [c / cum[p] if p >= 0 and cum[p] > 0 else (c if p < 0 else 0.0) for c, p in zip(cum, parents)]
    return Tree(np.asarray(parents, dtype=np.int64), np.asarray(labels, dtype=np.int64), np.clip(probs, 0.0, 1.0))
