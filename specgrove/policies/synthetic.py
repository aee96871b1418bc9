"""A synthetic target/draft pair: first-order Markov chains over a small vocabulary.

Useful wherever real models are too heavy or beside the point: tree-policy tests, the
losslessness tests (the exact target distribution is known), and the ``showcase`` demo. The
draft is the target blended with noise, so ``agreement`` dials how often they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specgrove.policies.base import DraftTopK, Expansion


@dataclass(frozen=True)
class MarkovPair:
    target: np.ndarray  # (V, V): target[a] = P(next | a)
    draft: np.ndarray  # (V, V): the draft's Q(next | a)

    @classmethod
    def random(cls, vocab: int, seed: int, agreement: float = 0.7, peak: float = 0.3) -> MarkovPair:
        """Random peaked target rows; draft = agreement * target + (1 - agreement) * noise.

        ``peak`` is the Dirichlet concentration: small values give confident, low-entropy
        rows, as language models have on most tokens.
        """
        if vocab < 2 or not 0.0 <= agreement <= 1.0:
            raise ValueError("MarkovPair needs vocab >= 2 and agreement in [0, 1]")
        rng = np.random.default_rng(seed)
        target = rng.dirichlet(np.full(vocab, peak), size=vocab)
        noise = rng.dirichlet(np.full(vocab, peak), size=vocab)
        draft = agreement * target + (1.0 - agreement) * noise
        return cls(target, draft / draft.sum(axis=1, keepdims=True))

    @property
    def vocab(self) -> int:
        return len(self.target)

    def drafter(self, root_token: int):
        """A draft callback for tree policies: answers with Q's top-k after each node."""
        return MarkovDrafter(self.draft, root_token)

    def node_rows(self, table: np.ndarray, root_token: int, tokens: np.ndarray) -> np.ndarray:
        """Rows of ``table`` for [root, nodes...]: the next-token distribution after each."""
        return table[np.concatenate([[root_token], tokens]).astype(np.int64)]


class MarkovDrafter:
    def __init__(self, draft: np.ndarray, root_token: int) -> None:
        self.draft, self.root_token = draft, root_token

    def __call__(self, expansion: Expansion) -> DraftTopK:
        last = [self.root_token if n < 0 else int(expansion.tokens[n]) for n in expansion.nodes]
        rows = self.draft[np.asarray(last, dtype=np.int64)]
        # Stable sort on the negated row: equal probabilities rank the lower token id first.
        order = np.argsort(-rows, axis=1, kind="stable")[:, : expansion.k]
        return DraftTopK(order, np.take_along_axis(rows, order, axis=1))
