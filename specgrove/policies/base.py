"""How tree policies talk to a draft model without touching one.

A tree policy is a coroutine. ``policy.grow(budget)`` is a generator that *yields* an
``Expansion`` (which nodes of the partial tree to expand, and how many children each), is
*sent* back the draft's top-k answer as ``DraftTopK``, and finally *returns* a candidate
``Tree``. ``policy.select(candidates, budget)`` then cuts the candidates to the step's budget.

That split is what lets one draft forward serve a whole batch: the executor's draft worker
advances every request's coroutine one depth at a time and answers all their expansions in a
single forward, while the simulator answers them from synthetic distributions. ``grow_tree``
and ``grow_batch`` drive the coroutines; ``specgrove.policies.speculation`` adds the budget
split and the selection on top, as one step both worlds call.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from specgrove.tree import Tree, select_top

ROOT = -1


@dataclass(frozen=True)
class Expansion:
    """A policy's request: the top-``k`` next tokens after each of ``nodes`` (``-1`` = root).

    ``parents``/``tokens`` describe the partial tree built so far, which the draft needs in
    order to know each node's path.
    """

    parents: np.ndarray
    tokens: np.ndarray
    nodes: np.ndarray
    k: int


@dataclass(frozen=True)
class DraftTopK:
    """The draft's answer: for each expanded node, ``k`` tokens by descending probability."""

    tokens: np.ndarray  # (num_nodes, k) int
    probs: np.ndarray  # (num_nodes, k) float

    def __post_init__(self) -> None:
        if self.tokens.shape != self.probs.shape or self.tokens.ndim != 2:
            raise ValueError(
                f"DraftTopK tokens {self.tokens.shape} and probs {self.probs.shape} must be "
                "equal 2-D shapes"
            )


TreeGrowth = Generator[Expansion, DraftTopK, Tree]
DraftFn = Callable[[Expansion], DraftTopK]
# A batched draft: answers one round, ``(request indices, their expansions) -> answers``.
BatchDraftFn = Callable[[list[int], list[Expansion]], list[DraftTopK]]


class TreePolicy:
    """Base class: subclasses implement ``grow``; ``select`` keeps the best nodes."""

    # False: the policy never asks the draft anything (plain decoding), so a draft side keeps
    # no state for it: no prompt prefill, no tokens to catch up on.
    drafts: bool = True
    # True: the executor's draft caches a request's prompt when the policy first speculates
    # on it (the first draft round catches up on the prompt and every token since), not at
    # admission. For a policy that may decode plainly for long (``dynamic-cost`` at a large
    # batch), so that a request it never speculates on costs no draft work at all.
    lazy_draft: bool = False
    # Prompt lookup (``specgrove.policies.lookup``): the tokens each request's match is asked
    # for every step (0: the policy never proposes from the request's own context), and the
    # n-gram sizes matched.
    lookup_length: int = 0
    max_ngram: int = 3
    min_ngram: int = 1
    # True: ``observe_step`` learns from the executor's step timings, so a draft on a rank of
    # its own must be sent them (the others are spared the wire bytes).
    observes_steps: bool = False

    def uses_draft(self, budget: int) -> bool:
        """Whether a run of this policy at ``budget`` nodes per request needs the draft at
        all (prompt prefill, catching up): the executor's draft side and the simulator's
        planner both ask."""
        return self.drafts and budget > 0

    def grow(self, budget: int) -> TreeGrowth:
        raise NotImplementedError

    def select(self, candidates: Tree, budget: int, context_tokens: int = 0) -> Tree:
        """Cut the candidates to ``budget`` nodes by cumulative draft probability."""
        return select_top(candidates, budget)

    def step_budget(self, budget: int, context_tokens: Sequence[int]) -> int:
        """Each request's growth budget this step, before any draft round runs; 0 makes the
        step plain decoding. Fixed policies keep the configured budget."""
        return budget

    def see_matches(self, matches: list[tuple[list[int], int]] | None) -> None:
        """Before ``step_budget``, for a policy with a ``lookup_length``: each request's
        prompt-lookup match this step, as (tokens, n-gram order; 0 for none); None where the
        caller has no lookup to offer."""

    def see_backlog(self, tokens: int) -> None:
        """Before ``step_budget``, from the executor's draft side: the tokens its draft has yet
        to see over the batch (prompts a lazy draft has not fed, tokens of steps it sat out),
        which the first draft round will feed. The simulator does not call it."""

    def step_lookup(self) -> bool:
        """Asked after ``step_budget``: whether this step verifies the requests' lookup
        matches (``lookup_tree``) instead of growing a draft tree (the default)."""
        return False

    def lookup_tree(self, tokens: list[int], order: int, context_tokens: int = 0) -> Tree:
        """The tree a request verifies from its prompt-lookup match: ``tokens`` followed the
        latest earlier occurrence of its context's last ``order`` tokens (0: no match)."""
        raise NotImplementedError(f"{type(self).__name__} does not propose by prompt lookup")

    def with_lookup(self, candidates: Tree, match: tuple[list[int], int]) -> Tree:
        """A drafted step's candidates for one request, with that request's prompt-lookup
        match (tokens, order) merged in, before the budget cut; by default as grown."""
        return candidates

    def probe_rows(self, num_requests: int) -> list[int] | None:
        """Asked after ``step_budget``: the requests (batch indices) that alone speculate this
        step, the others decoding plainly; None (every request) unless the policy is probing."""
        return None

    def observe_step(self, timing) -> None:
        """The executor's timing of the step just run (``specgrove.cost.StepTiming``), for
        policies that learn their costs online; the simulator does not call it."""


class PartialTree:
    """Mutable builder used inside ``grow``: append children, then freeze to a ``Tree``.

    With a ``score`` map (e.g. a ``ConfidenceMap``), each proposal's draft probability is
    replaced by its estimated acceptance before it enters the tree.
    """

    def __init__(self, score: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.score = score
        self.parents: list[int] = []
        self.tokens: list[int] = []
        self.probs: list[float] = []
        self.cum: list[float] = []

    def __len__(self) -> int:
        return len(self.parents)

    def expansion(self, nodes: Sequence[int], k: int) -> Expansion:
        return Expansion(
            np.array(self.parents, dtype=np.int64),
            np.array(self.tokens, dtype=np.int64),
            np.asarray(nodes, dtype=np.int64),
            int(k),
        )

    def add_children(self, nodes: Sequence[int], topk: DraftTopK, counts: Sequence[int]) -> list[int]:
        """Add the first ``counts[j]`` proposals of ``topk`` row j under ``nodes[j]``."""
        new = []
        probs = topk.probs if self.score is None else self.score(topk.probs)
        for j, (node, count) in enumerate(zip(nodes, counts)):
            base = 1.0 if node == ROOT else self.cum[node]
            for tok, prob in zip(topk.tokens[j, :count].tolist(), probs[j, :count].tolist()):
                self.parents.append(int(node))
                self.tokens.append(int(tok))
                self.probs.append(float(prob))
                self.cum.append(base * float(prob))
                new.append(len(self.parents) - 1)
        return new

    def freeze(self) -> Tree:
        return Tree(
            np.array(self.parents, dtype=np.int64),
            np.array(self.tokens, dtype=np.int64),
            np.clip(np.array(self.probs, dtype=np.float64), 0.0, 1.0),
        )


def grow_tree(policy: TreePolicy, draft: DraftFn, budget: int) -> Tree:
    """Grow one request's candidates with a plain callback, then select ``budget`` nodes."""
    return policy.select(grow_batch([policy.grow(budget)], lambda _, exps: [draft(e) for e in exps])[0], budget)


def grow_batch(growths: Sequence[TreeGrowth], draft: BatchDraftFn) -> list[Tree]:
    """Advance several policies' coroutines in lockstep; ``draft`` answers one round at once,
    told which request (index into ``growths``) asked for each expansion.

    Returns each request's *candidate* tree (before ``select``).
    """
    results: list[Tree | None] = [None] * len(growths)
    pending: dict[int, Expansion] = {}
    for i, gen in enumerate(growths):
        try:
            pending[i] = next(gen)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        ids = sorted(pending)
        answers = draft(ids, [pending[i] for i in ids])
        pending = {}
        for i, answer in zip(ids, answers):
            try:
                pending[i] = growths[i].send(answer)
            except StopIteration as stop:
                results[i] = stop.value
    return results  # type: ignore[return-value]
