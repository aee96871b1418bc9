"""The acceptance model: synthetic draft probabilities in, accepted lengths out.

Exact mode runs the shared speculation step (``specgrove.policies.speculation``) with the
registered tree and batch-budget policies, as the executor does. Each expansion is answered
with synthetic top-k probabilities: the top-1 probability drawn from a Beta around the pair's
*draft confidence*, the rest of the mass shared geometrically by the lower ranks. The policy
grows and selects its tree from these numbers exactly as it would from a real draft.

Verification then walks the tree from the root. Among a node's children, child i is the
target's next token with probability ``scale * p_i ** gamma`` (how the draft's confidence
maps to acceptance; renormalised if the siblings' sum passes 1); with what is left, no child
matches and the walk stops. ``scale = gamma = 1`` is a draft whose probabilities are exactly
its acceptance rates, the assumption behind EAGLE-2's ranking by cumulative probability.

Prompt lookup (``lookup``, and ``dynamic-cost``'s lookup shape) copies its proposals from the
request's own context, so no draft answers them: ``SyntheticLookup`` (``sim.lookup``) draws each request's match
order (the n of the longest n-gram of its context's end seen before, or none), and
verification accepts the chain's j-th token with the order's measured chance at depth j,
given the tokens above it were accepted.

Tabulated mode precomputes, per domain and per-request budget, a few thousand exact samples
of (tree size, draft rounds, expanded nodes, accepted length) and draws rows from them: one
numpy call per step instead of a Python tree per request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from specgrove.policies.base import DraftTopK, Expansion, TreePolicy
from specgrove.policies.speculation import Speculation, speculate
from specgrove.sim.lookup import SyntheticLookup
from specgrove.tree import children


@dataclass(frozen=True)
class SyntheticDraft:
    """The simulated draft, per pair and per domain: how confident it is, and how that
    confidence maps to acceptance (scenario section ``[acceptance.draft]``)."""

    confidence_mean: float = 0.6  # mean top-1 draft probability
    confidence_concentration: float = 8.0  # Beta concentration; 0 = always exactly the mean
    tail_ratio: float = 0.5  # rank r+1 gets tail_ratio times rank r's share of the rest
    scale: float = 1.0  # P(accept) = scale * p ** gamma
    gamma: float = 1.0

    def accept_probs(self, probs: np.ndarray) -> np.ndarray:
        c = self.scale * np.asarray(probs) ** self.gamma
        total = c.sum()
        return c / total if total > 1.0 else c


def accepted_path(parents: np.ndarray, probs: np.ndarray, draft: SyntheticDraft, rng: np.random.Generator) -> list[int]:
    """Walk root to leaf: at each level at most one child is the target's token. Returns the
    accepted nodes, root to deepest."""
    kids = children(parents)
    node, path = -1, []
    while kids[node]:
        c = draft.accept_probs(probs[kids[node]])
        pick = int(np.searchsorted(np.cumsum(c), rng.random(), side="right"))
        if pick >= len(c):
            break
        node = kids[node][pick]
        path.append(node)
    return path


@dataclass
class Outcome:
    """One step's speculation for a batch of decoding requests."""

    tree_sizes: np.ndarray  # nodes verified per request (the root not counted)
    emitted: np.ndarray  # accepted nodes + the bonus token, per request (before any cap)
    draft_rounds: list[tuple[int, float]]  # (number of rounds, draft tokens in each)
    num_nodes: int = 0  # tree_sizes.sum(), which both modes get for free
    candidates: list | None = None  # exact mode: each request's candidate tree, pre-select
    trees: list | None = None  # exact mode: the verified trees
    paths: list | None = None  # exact mode: each tree's accepted nodes
    lookup_orders: tuple[int, ...] = ()  # exact mode, a lookup step: each request's match order


class ExactAcceptance:
    """Real policy code on synthetic draft answers: grow, split the budget, select, walk."""

    def __init__(self, policy: TreePolicy, budget_fn: Callable, drafts: Sequence[SyntheticDraft], budget: int,
                 batch_node_budget: int = 0, lookup: SyntheticLookup | None = None):
        self.policy, self.budget_fn, self.drafts = policy, budget_fn, list(drafts)
        self.lookup = lookup or SyntheticLookup()
        self.budget, self.batch_node_budget = budget, batch_node_budget
        # Per-domain parameters as arrays, so one round of a whole batch is one Beta draw.
        self._mean = np.array([c.confidence_mean for c in self.drafts])
        self._conc = np.array([c.confidence_concentration for c in self.drafts])
        self._tail = np.array([c.tail_ratio for c in self.drafts])

    def total_budget(self, n: int) -> int:
        return min(self.batch_node_budget, self.budget * n) if self.batch_node_budget else self.budget * n

    def draft_round(self, ids: list[int], expansions: list[Expansion], domains: np.ndarray,
                    rng: np.random.Generator) -> list[DraftTopK]:
        """Answer one draft round for every pending expansion (``ids``: whose), vectorised over
        all expanded nodes of the batch: top-1 from the domain's Beta, the rest geometric,
        sorted."""
        counts = [len(e.nodes) for e in expansions]
        kmax = max(e.k for e in expansions)
        d = np.repeat(domains[ids], counts)
        top1 = self._mean[d]
        random = self._conc[d] > 0
        if random.any():
            a = top1[random] * self._conc[d][random]
            top1 = top1.copy()
            top1[random] = rng.beta(a, self._conc[d][random] - a)
        q = self._tail[d][:, None]
        tail = (1 - top1)[:, None] * (1 - q) * q ** np.arange(kmax - 1)
        probs = -np.sort(-np.concatenate([top1[:, None], tail], axis=1), axis=1)
        tokens = np.broadcast_to(np.arange(kmax), probs.shape)
        out, start = [], 0
        for e, count in zip(expansions, counts):
            out.append(DraftTopK(tokens[start : start + count, : e.k], probs[start : start + count, : e.k]))
            start += count
        return out

    def speculate(self, domains: np.ndarray, contexts: np.ndarray, rng: np.random.Generator,
                  budget: int | None = None, draft=None, lookup=None, generated=None) -> Speculation:
        """The shared speculation step on synthetic answers (or on ``draft``'s, a
        ``BatchDraftFn``). With ``budget`` given (table building), every request keeps exactly
        that many nodes, bypassing the batch-budget policy; it still grows with the full
        per-request budget, as exact mode does before a share cuts it (so a table for a small
        share charges the draft work the real step would). ``lookup``: the requests' prompt
        lookup matches (a ``LookupFn``); by default drawn from the synthetic lookup (by each
        request's ``generated``, its own output cached, where given)."""
        n = len(domains)
        if draft is None:
            draft = lambda ids, exps: self.draft_round(ids, exps, domains, rng)  # noqa: E731
        if lookup is None and self.policy.lookup_length:
            orders = self.lookup.draw_orders(n, rng, contexts, generated).tolist()
            held = self.lookup.draw_lengths(orders, self.policy.lookup_length, rng)
            # The chain's tokens are placeholders: a lookup step's walk reads only the match's
            # order. Negative, so that merged into a draft tree (``dynamic-lookup``) the chain
            # never coincides with a draft proposal (synthetic tokens are ranks, 0 up): it hangs
            # from the root as a branch of its own, walked like the draft's nodes by its scores.
            lookup = lambda i, k: (list(range(-1, -min(k, held[i]) - 1, -1)), orders[i]) if orders[i] else ([], 0)  # noqa: E731
        if budget is None:
            return speculate(self.policy, self.budget_fn, self.budget, self.total_budget(n), contexts, draft,
                             lookup=lookup)
        return speculate(self.policy, lambda scores, _: [budget] * len(scores), self.budget, budget * n, contexts, draft,
                         plan=False, lookup=lookup)

    def step(self, domains: np.ndarray, contexts: np.ndarray, rng: np.random.Generator, budget: int | None = None,
             generated: np.ndarray | None = None) -> Outcome:
        """One step for a batch: speculate, then walk each tree to its accepted length
        (``generated``: each request's own output already cached, which prompt lookup's
        matches depend on)."""
        spec = self.speculate(domains, contexts, rng, budget, generated=generated)
        n = len(domains)
        sizes = np.zeros(n, dtype=np.int64)
        accepted = np.zeros(n, dtype=np.int64)
        paths = []
        orders = spec.lookup_orders
        for i, tree in enumerate(spec.trees):
            sizes[i] = len(tree)
            if orders and orders[i] > 0:  # a chain: nodes 0, 1, 2, ... root to leaf
                paths.append(list(range(self.lookup.accepted(orders[i], len(tree), rng))))
            else:
                paths.append(accepted_path(tree.parents, tree.probs, self.drafts[domains[i]], rng))
            accepted[i] = len(paths[-1])
        return Outcome(sizes, accepted + 1, [(1, float(w)) for w in spec.round_widths], int(sizes.sum()),
                       spec.candidates, spec.trees, paths, orders)


@dataclass(frozen=True)
class Table:
    """Exact samples, one row each: tree size, emitted (accepted + 1), draft rounds, expanded
    nodes."""

    rows: np.ndarray  # (num_samples, 4) int64


def budget_levels(budget: int) -> list[int]:
    """Budgets that get a table: 0, 1, 2, 3, 4, 6, 8, 12, 16, ... (powers of two and 1.5x
    them) and ``budget`` itself. Shares in between mix the two neighbouring tables."""
    levels = {0, budget}
    k = 1
    while k < budget:
        levels.update(x for x in (k, 3 * k // 2) if x < budget)
        k *= 2
    return sorted(levels)


class TabulatedAcceptance:
    """Draw each request's (size, rounds, expanded, accepted) from precomputed exact samples.

    Approximations, stated: the budget split is the uniform share of the batch budget
    (whatever the batch-budget policy); a share between two table budgets draws from a
    mixture of the two tables weighted to match it on average, so a handful of tables
    serve every batch size; cost-aware selection sees ``context_tokens`` fixed at
    table-building time. Whether to speculate at all is still the policy's choice per step
    (``step_budget``), with the step's real batch and contexts.
    """

    def __init__(self, exact: ExactAcceptance, rng: np.random.Generator, context_tokens: int, num_samples: int = 2048,
                 measured: dict[int, np.ndarray] | None = None,
                 measured_by_generated: dict[int, tuple[np.ndarray, list[np.ndarray]]] | None = None):
        self.exact, self.rng = exact, rng
        # A calibration profile's rows for this policy, per domain (distinct rows and their
        # counts): drawn as they were measured, whatever the batch's share of the budget,
        # instead of the synthetic draft's samples.
        self.measured = {d: self._quantiles(rows, num_samples) for d, rows in (measured or {}).items()}
        # The same rows split by how much of its own output a request had cached, where the
        # profile has them: each request draws from its own bin (prompt lookup's matches come
        # from the text the model already wrote, so a long answer accepts more than a short
        # one, and a workload's mix of output lengths need not be the calibration's).
        self.by_generated = {d: (np.asarray(edges), [self._quantiles(r, num_samples) for r in rows])
                             for d, (edges, rows) in (measured_by_generated or {}).items() if d in self.measured}
        self.context_tokens, self.num_samples = context_tokens, num_samples
        # Tables get their own streams, keyed by (domain, budget): their contents do not
        # depend on the order the run happens to need them in.
        self._table_seed = int(rng.integers(2**62))
        self._tables: dict[tuple[int, int], Table] = {}
        self._levels = budget_levels(exact.budget)
        self._mixed: dict[tuple[int, int], np.ndarray] = {}  # (domain, batch size) -> rows
        # Row indices drawn in blocks: one Generator call per few thousand requests, not per step.
        self._block = np.zeros(0, dtype=np.int64)
        self._pos = 0

    def _indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self._pos + n > len(self._block):
            self._block = rng.integers(0, self.num_samples, size=max(8192, n))
            self._pos = 0
        self._pos += n
        return self._block[self._pos - n : self._pos]

    def table(self, domain: int, budget: int) -> Table:
        key = (domain, budget)
        if key not in self._tables:
            self._tables[key] = self._build(domain, budget)
        return self._tables[key]

    def _build(self, domain: int, budget: int) -> Table:
        rng = np.random.default_rng([self._table_seed, domain, budget])
        rows = []
        chunk = 64
        doms, ctx = np.full(chunk, domain), np.full(chunk, self.context_tokens)
        while len(rows) < self.num_samples:
            out = self.exact.step(doms, ctx, rng, budget)
            for cand, size, acc in zip(out.candidates, out.tree_sizes.tolist(), out.emitted.tolist()):
                # Per request: one draft round per candidate depth, one draft token per
                # expanded node (each distinct parent, the root included).
                expanded = len(set(cand.parents.tolist())) if len(cand) else 0
                rows.append((size, acc, cand.depth, expanded))
        return Table(np.asarray(rows[: self.num_samples], dtype=np.int64))

    def mean_emitted(self, domain: int = 0) -> float:
        if domain in self.measured:
            return float(self.measured[domain][:, 1].mean())
        return float(self.table(domain, self.exact.budget).rows[:, 1].mean())

    def step(self, domains: np.ndarray, contexts: np.ndarray, rng: np.random.Generator,
             generated: np.ndarray | None = None) -> Outcome:
        """Each request's row: from its domain's measured bin of ``generated`` (its own output
        already cached; none given: 0), else the domain's measured or synthetic table."""
        n = len(domains)
        if not self.measured and self.exact.policy.step_budget(self.exact.budget, contexts) <= 0:
            # The policy decodes plainly this step (load-adaptive ``dynamic-cost``): no draft
            # round, one token each. Tables hold what speculating yields; measured rows already
            # hold the executor's own choices.
            return Outcome(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), [], 0)
        if len(self.exact.drafts) == 1 and not self.by_generated:  # the fast path: one table, one draw
            rows = self._mixed.get((0, n))
            if rows is None:
                rows = self._rows(0, n)
            drawn = rows[self._indices(rng, n)]
        else:
            drawn = np.empty((n, 4), dtype=np.int64)
            own = np.zeros(n, dtype=np.int64) if generated is None else np.asarray(generated)
            for d in np.unique(domains).tolist():
                mask = domains == d
                drawn[mask] = self._draw(d, n, own[mask], rng)
        rounds = int(drawn[:, 2].max()) if n else 0
        num_nodes, _, _, expanded = drawn.sum(axis=0).tolist()
        # The batch drafts for as many rounds as its deepest tree; spread the expanded nodes
        # evenly over them (exact mode knows each round's width, the table does not).
        return Outcome(drawn[:, 0], drawn[:, 1], [(rounds, expanded / rounds)] if rounds else [], num_nodes)

    def _draw(self, domain: int, n: int, generated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One row per request of ``domain`` (``generated``: theirs) in a batch of n."""
        if domain not in self.by_generated:
            return self._rows(domain, n)[self._indices(rng, len(generated))]
        edges, tables = self.by_generated[domain]
        which = np.searchsorted(edges, generated, side="right")
        drawn = np.empty((len(generated), 4), dtype=np.int64)
        for b in np.unique(which).tolist():
            mask = which == b
            drawn[mask] = tables[b][self._indices(rng, int(mask.sum()))]
        return drawn

    @staticmethod
    def _quantiles(counted: np.ndarray, num_samples: int) -> np.ndarray:
        """``num_samples`` rows at evenly spaced quantiles of a counted law (rows with a count
        column): the measured distribution without resampling noise."""
        rows = np.repeat(counted[:, :4], counted[:, 4], axis=0)
        return rows[((np.arange(num_samples) + 0.5) * len(rows) / num_samples).astype(np.int64)]

    def _rows(self, domain: int, n: int) -> np.ndarray:
        """Rows for a batch of n: the uniform share of the batch budget, as a mixture of the
        tables just below and above it (rows are i.i.d., so taking the first (1 - w) N of
        one and the first w N of the other is a sample of the mixture)."""
        key = (domain, n)
        if key not in self._mixed and domain in self.measured:
            self._mixed[key] = self.measured[domain]
        if key not in self._mixed:
            share = min(self.exact.total_budget(n) / max(n, 1), self.exact.budget)
            hi = next(level for level in self._levels if level >= share)
            lo = max(level for level in self._levels if level <= share)
            low_rows = self.table(domain, lo).rows
            if hi == lo:
                self._mixed[key] = low_rows
            else:
                take_hi = round((share - lo) / (hi - lo) * self.num_samples)
                high_rows = self.table(domain, hi).rows
                self._mixed[key] = np.concatenate([low_rows[: self.num_samples - take_hi], high_rows[:take_hi]])
        return self._mixed[key]
