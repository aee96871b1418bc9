"""The acceptance model: synthetic draft probabilities in, accepted lengths out.

Exact mode runs the registered tree policy for real. Each expansion it yields is answered
with synthetic top-k probabilities: the top-1 probability drawn from a Beta around the pair's
*draft confidence*, the rest of the mass shared geometrically by the lower ranks. The policy
grows and selects its tree from these numbers exactly as it would from a real draft.

Verification then walks the tree from the root. Among a node's children, child i is the
target's next token with probability ``scale * p_i ** gamma`` (the *calibration* of draft
confidence to acceptance; renormalised if the siblings' sum passes 1); with what is left, no
child matches and the walk stops. ``scale = gamma = 1`` is a perfectly calibrated draft, the
assumption behind EAGLE-2's ranking by cumulative probability.

Tabulated mode precomputes, per domain and per-request budget, a few thousand exact samples
of (tree size, draft rounds, expanded nodes, accepted length) and draws rows from them: one
numpy call per step instead of a Python tree per request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from specgrove.policies.base import DraftTopK, TreePolicy, grow_batch
from specgrove.tree import children


@dataclass(frozen=True)
class Calibration:
    """Per pair and per domain: how confident the draft is, and how that maps to acceptance."""

    confidence_mean: float = 0.6  # mean top-1 draft probability
    confidence_concentration: float = 8.0  # Beta concentration; 0 = always exactly the mean
    tail_ratio: float = 0.5  # rank r+1 gets tail_ratio times rank r's share of the rest
    scale: float = 1.0  # P(accept) = scale * p ** gamma
    gamma: float = 1.0

    def draft_probs(self, rng: np.random.Generator, num_nodes: int, k: int) -> np.ndarray:
        if self.confidence_concentration == 0:
            top1 = np.full(num_nodes, self.confidence_mean)
        else:
            a = self.confidence_mean * self.confidence_concentration
            top1 = rng.beta(a, self.confidence_concentration - a, size=num_nodes)
        share = (1 - self.tail_ratio) * self.tail_ratio ** np.arange(k - 1)
        probs = np.concatenate([top1[:, None], (1 - top1)[:, None] * share[None, :]], axis=1)
        return -np.sort(-probs, axis=1)  # DraftTopK is by descending probability

    def accept_probs(self, probs: np.ndarray) -> np.ndarray:
        c = self.scale * np.asarray(probs) ** self.gamma
        total = c.sum()
        return c / total if total > 1.0 else c


def accepted_length(parents: np.ndarray, probs: np.ndarray, calib: Calibration, rng: np.random.Generator) -> int:
    """Walk root to leaf: at each level at most one child is the target's token."""
    kids = children(parents)
    node, accepted = -1, 0
    while kids[node]:
        c = calib.accept_probs(probs[kids[node]])
        pick = int(np.searchsorted(np.cumsum(c), rng.random(), side="right"))
        if pick >= len(c):
            break
        node = kids[node][pick]
        accepted += 1
    return accepted


@dataclass
class Outcome:
    """One step's speculation for a batch of decoding requests."""

    tree_sizes: np.ndarray  # nodes verified per request (the root not counted)
    accepted: np.ndarray  # accepted nodes per request (emitted = accepted + 1)
    round_tokens: list[float]  # draft tokens per draft round (one forward per round)


def _tagged(i: int, gen):
    """Forward a policy coroutine, tagging each expansion with its request index."""
    try:
        exp = next(gen)
    except StopIteration as stop:
        return stop.value
    while True:
        answer = yield (i, exp)
        try:
            exp = gen.send(answer)
        except StopIteration as stop:
            return stop.value


class ExactAcceptance:
    """Real policy code on synthetic draft answers: grow, split the budget, select, walk."""

    def __init__(self, policy: TreePolicy, budget_fn: Callable, calibs: Sequence[Calibration], budget: int, batch_node_budget: int = 0):
        self.policy, self.budget_fn, self.calibs = policy, budget_fn, list(calibs)
        self.budget, self.batch_node_budget = budget, batch_node_budget

    def total_budget(self, n: int) -> int:
        return min(self.batch_node_budget, self.budget * n) if self.batch_node_budget else self.budget * n

    def step(self, domains: np.ndarray, contexts: np.ndarray, rng: np.random.Generator, budget: int | None = None) -> Outcome:
        n = len(domains)
        total = self.total_budget(n) if budget is None else budget * n
        budget = self.budget if budget is None else budget
        dom = [self.calibs[d] for d in domains.tolist()]
        round_tokens: list[float] = []

        def draft(tagged):
            round_tokens.append(float(sum(len(e.nodes) for _, e in tagged)))
            answers = []
            for i, e in tagged:
                probs = dom[i].draft_probs(rng, len(e.nodes), e.k)
                tokens = np.broadcast_to(np.arange(e.k), probs.shape).copy()
                answers.append(DraftTopK(tokens, probs))
            return answers

        cands = grow_batch([_tagged(i, self.policy.grow(budget)) for i in range(n)], draft)
        shares = self.budget_fn([c.cum_probs for c in cands], total)
        sizes = np.zeros(n, dtype=np.int64)
        accepted = np.zeros(n, dtype=np.int64)
        for i, (cand, share) in enumerate(zip(cands, shares)):
            tree = self.policy.select(cand, int(share), int(contexts[i]))
            sizes[i] = len(tree)
            accepted[i] = accepted_length(tree.parents, tree.probs, dom[i], rng)
        return Outcome(sizes, accepted, round_tokens)


@dataclass(frozen=True)
class Table:
    tree_sizes: np.ndarray
    accepted: np.ndarray
    rounds: np.ndarray
    expanded: np.ndarray


class TabulatedAcceptance:
    """Draw each request's (size, rounds, expanded, accepted) from precomputed exact samples.

    Approximations, stated: the budget split is the uniform share of the batch budget
    (whatever the batch-budget policy), and cost-aware selection sees ``context_tokens``
    fixed at table-building time.
    """

    def __init__(self, exact: ExactAcceptance, rng: np.random.Generator, context_tokens: int, num_samples: int = 2048):
        self.exact, self.rng = exact, rng
        self.context_tokens, self.num_samples = context_tokens, num_samples
        # Tables get their own streams, keyed by (domain, budget): their contents do not
        # depend on the order the run happens to need them in.
        self._table_seed = int(rng.integers(2**62))
        self._tables: dict[tuple[int, int], Table] = {}

    def table(self, domain: int, budget: int) -> Table:
        key = (domain, budget)
        if key not in self._tables:
            self._tables[key] = self._build(domain, budget)
        return self._tables[key]

    def _build(self, domain: int, budget: int) -> Table:
        rng = np.random.default_rng([self._table_seed, domain, budget])
        rows = []
        doms, ctx = np.array([domain]), np.array([self.context_tokens])
        for _ in range(self.num_samples):
            # One request at a time, so rounds and expansions are per request.
            out = self.exact.step(doms, ctx, rng, budget)
            rows.append((out.tree_sizes[0], out.accepted[0], len(out.round_tokens), sum(out.round_tokens)))
        return Table(*np.asarray(rows, dtype=np.int64).T.copy())

    def mean_emitted(self, domain: int = 0) -> float:
        return 1.0 + float(self.table(domain, self.exact.budget).accepted.mean())

    def step(self, domains: np.ndarray, contexts: np.ndarray, rng: np.random.Generator) -> Outcome:
        n = len(domains)
        share = min(self.exact.budget, self.exact.total_budget(n) // max(n, 1))
        sizes = np.empty(n, dtype=np.int64)
        accepted = np.empty(n, dtype=np.int64)
        rounds = 0
        expanded = 0
        groups = [slice(None)] if len(self.exact.calibs) == 1 else [domains == d for d in np.unique(domains).tolist()]
        for mask in groups:
            d = 0 if isinstance(mask, slice) else int(domains[mask][0])
            t = self.table(d, share)
            idx = rng.integers(0, len(t.accepted), size=n if isinstance(mask, slice) else int(mask.sum()))
            sizes[mask], accepted[mask] = t.tree_sizes[idx], t.accepted[idx]
            rounds = max(rounds, int(t.rounds[idx].max()))
            expanded += int(t.expanded[idx].sum())
        return Outcome(sizes, accepted, [expanded / rounds] * rounds if rounds else [])
