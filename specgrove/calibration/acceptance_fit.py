"""Fit the simulator's acceptance behaviour to traced trees.

Two products, one per simulator mode:

* Exact mode: the synthetic draft (``sim.acceptance.SyntheticDraft``). The draft's confidence
  (mean and spread of the top-ranked child's score, the share the next rank takes of the
  rest) is read off the traced trees; the confidence -> acceptance curve
  ``P(accept child) = scale * score ** gamma`` is fitted by maximum likelihood over every
  level the verification walk reached: at a node on the accepted path its children were
  tested, and the trace says which one (if any) the target took.
* Exact mode, prompt lookup (``sim.lookup.SyntheticLookup``): per match order, the
  share of lookup chains that came from it, overall, by the request's context length
  (``LOOKUP_CONTEXT_EDGES``) and by its own output cached (quantile bins), and per depth the share of reached tokens that were accepted (a
  token is reached when every token above it was accepted).
* Tabulated mode: the measured per-request rows (tree size, emitted tokens, depth, expanded
  nodes), per method and domain, which the simulator draws from instead of its own samples
  when the scenario runs that method; and the same rows split by how much of its own output
  the request had cached (``acceptance_rows_by_generated``). On the demo pair's serving traces
  prompt lookup accepted 0.19 tokens a step over a request's first 8 output tokens and 1.8
  past 64, whatever the prompt's length: its matches come from the text the model already
  wrote. A workload's mix of output lengths need not be the calibration's.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from scipy.optimize import minimize

from specgrove.trace import Trace

def _children(parents: tuple[int, ...]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(parents):
        kids[p].append(i)
    return kids


def confidence_levels(trace: Trace) -> list[tuple[np.ndarray, int]]:
    """Every tested level: (children's scores, index of the accepted child or -1)."""
    levels = []
    for _, share in trace.request_steps():
        if not share.parents or not share.scores or share.lookup_order >= 0:  # a lookup chain: not the draft's
            continue
        kids, scores = _children(share.parents), np.asarray(share.scores)
        node, path = -1, list(share.accepted_nodes)
        for depth in range(len(path) + 1):
            below = kids.get(node, [])
            if not below:
                break
            taken = path[depth] if depth < len(path) else None
            levels.append((scores[below], below.index(taken) if taken is not None else -1))
            if taken is None:
                break
            node = taken
    return levels


def fit_draft(trace: Trace) -> dict:
    """``SyntheticDraft`` parameters (and the fit's evidence) from traced trees."""
    top1, second_share, levels = [], [], confidence_levels(trace)
    for _, share in trace.request_steps():
        if not share.parents or not share.scores or share.lookup_order >= 0:
            continue
        scores = np.asarray(share.scores)
        for kids in _children(share.parents).values():
            ranked = np.sort(scores[kids])[::-1]
            top1.append(ranked[0])
            if len(ranked) > 1 and ranked[0] < 1:
                second_share.append(ranked[1] / (1 - ranked[0]))
    if not levels:
        raise ValueError("the traces hold no trees with scores (run with a tree policy, not ar)")
    top1 = np.clip(np.asarray(top1), 1e-6, 1 - 1e-6)
    mean = float(top1.mean())
    var = float(top1.var())
    concentration = max(mean * (1 - mean) / var - 1, 0.0) if var > 1e-12 else 0.0
    tail_ratio = float(np.clip(1 - np.mean(second_share), 0.0, 0.99)) if second_share else 0.5

    # Levels as one padded block, so each likelihood evaluation is a few array operations.
    width = max(len(scores) for scores, _ in levels)
    block = np.zeros((len(levels), width))
    present = np.zeros((len(levels), width), dtype=bool)
    taken = np.array([t for _, t in levels])
    for i, (scores, _) in enumerate(levels):
        block[i, : len(scores)] = np.clip(scores, 1e-9, 1)
        present[i, : len(scores)] = True
    hit = taken >= 0
    rows = np.arange(len(levels))

    def neg_log_likelihood(theta: np.ndarray) -> float:
        scale, gamma = 1 / (1 + np.exp(-theta[0])), np.exp(theta[1])
        c = np.where(present, scale * block ** gamma, 0.0)
        total = c.sum(axis=1)
        c = c / np.maximum(total, 1.0)[:, None]  # siblings' chances renormalised past 1
        p = np.where(hit, c[rows, np.maximum(taken, 0)], 1 - c.sum(axis=1))
        return -float(np.log(np.maximum(p, 1e-12)).sum())

    best = minimize(neg_log_likelihood, np.array([2.0, 0.0]), method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400})
    scale, gamma = float(1 / (1 + np.exp(-best.x[0]))), float(np.exp(best.x[1]))
    return {"confidence_mean": mean, "confidence_concentration": float(concentration),
            "tail_ratio": tail_ratio, "scale": scale, "gamma": gamma, "levels": len(levels)}


# Context bins of the lookup order shares (cached tokens): on the demo pair's serving traces the
# share of steps with a match rose from 0.42 under 48 tokens to 0.86 past 192.
LOOKUP_CONTEXT_EDGES = (48, 96, 144, 192)
LOOKUP_MIN_BIN = 100  # request steps a context bin needs for its own shares (else the overall ones)


def fit_lookup(trace: Trace, max_depth: int = 8) -> dict:
    """``SyntheticLookup`` parameters from the traced lookup steps (``lookup_order`` >= 0), with
    their evidence; empty when the traces verified no lookup chain. The order shares count
    every request of a lookup step, a match or none (a policy that chose lookup for its good
    matches, as ``dynamic-cost`` does, overstates them; the fixed ``lookup`` method does not)."""
    orders: Counter = Counter()
    by_bin: list[Counter] = [Counter() for _ in range(len(LOOKUP_CONTEXT_EDGES) + 1)]
    by_own: list[tuple[int, int]] = []  # (output cached, order) per lookup request step
    sizes: dict[int, Counter] = defaultdict(Counter)  # per order: chain lengths verified
    reached = np.zeros((0, max_depth))
    accepted = np.zeros((0, max_depth))
    for _, share, generated in with_generated(trace):
        if share.lookup_order < 0:
            continue
        n = share.lookup_order
        orders[n] += 1
        by_bin[int(np.searchsorted(LOOKUP_CONTEXT_EDGES, share.context_tokens, side="right"))][n] += 1
        by_own.append((generated, n))
        if n == 0 or share.tree_size == 0:
            continue
        sizes[n][share.tree_size] += 1
        if n > len(reached):
            grow = n - len(reached)
            reached = np.vstack([reached, np.zeros((grow, max_depth))])
            accepted = np.vstack([accepted, np.zeros((grow, max_depth))])
        for j in range(min(share.accepted_len + 1, share.tree_size, max_depth)):
            reached[n - 1, j] += 1
            accepted[n - 1, j] += j < share.accepted_len
    total = sum(orders.values())
    if not total or not len(reached):
        return {}
    accept = []
    for r, a in zip(reached, accepted):
        seen = r > 0
        # Depths past the deepest one reached repeat the last measured chance (none: 0.5).
        rates = (a[seen] / r[seen]).tolist() if seen.any() else [0.5]
        accept.append([round(x, 4) for x in rates])
    shares = lambda counts: [round(counts[n] / sum(counts.values()), 4) for n in range(1, len(reached) + 1)]  # noqa: E731
    overall = shares(orders)
    by_context = [shares(c) if sum(c.values()) >= LOOKUP_MIN_BIN else overall for c in by_bin]
    own_edges = quantile_edges([g for g, _ in by_own], min_bin=LOOKUP_MIN_BIN)  # every bin holds enough
    own_bins: list[Counter] = [Counter() for _ in range(len(own_edges) + 1)]
    for g, n in by_own:
        own_bins[int(np.searchsorted(own_edges, g, side="right"))][n] += 1
    longest = max((k for c in sizes.values() for k in c), default=1)
    lengths = [[round(sizes[n][k] / sum(sizes[n].values()), 4) if sizes[n] else float(k == longest)
                for k in range(1, longest + 1)] for n in range(1, len(reached) + 1)]
    lengths = [[p / sum(row) for p in row] for row in lengths]  # exactly 1 after rounding
    return {"orders": overall, "accept": accept, "lengths": lengths,
            "context_edges": list(LOOKUP_CONTEXT_EDGES), "orders_by_context": by_context,
            **({"generated_edges": own_edges, "orders_by_generated": [shares(c) for c in own_bins]} if own_edges else {}),
            "evidence": {"requests": total, "reached": reached.astype(int).tolist(),
                         "accepted": accepted.astype(int).tolist(),
                         "requests_by_context": [sum(c.values()) for c in by_bin],
                         "requests_by_generated": [sum(c.values()) for c in own_bins] if own_edges else []}}


def acceptance_curve(trace: Trace, edges=np.linspace(0, 1, 11)) -> dict:
    """Measured acceptance of each level's top-scored child by score bin (for the report)."""
    scores, hits = [], []
    for s, taken in confidence_levels(trace):
        best = int(np.argmax(s))
        scores.append(s[best])
        hits.append(taken == best)
    scores, hits = np.asarray(scores), np.asarray(hits, dtype=float)
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(bins, minlength=len(edges) - 1)
    rate = np.bincount(bins, weights=hits, minlength=len(edges) - 1) / np.maximum(count, 1)
    return {"edges": edges.tolist(), "count": count.tolist(), "rate": rate.tolist()}


def acceptance_rows(trace: Trace) -> dict[str, dict[str, list[list[int]]]]:
    """Per method and domain: the distinct rows (tree size, accepted + 1, draft rounds,
    expanded nodes) of every request step, each with its count (the exact empirical law, in
    the simulator's table layout). ``accepted + 1`` is what the step would emit uncut (the
    simulator cuts at the request's end itself; dropping the cut steps would bias the rows
    against long acceptances, the ones a request's end cuts). Rounds are the step's (the batch
    drafts in lockstep); a request's expanded nodes are its equal share of the round widths."""
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for method, domain, _, row in _request_rows(trace):
        counts[method][domain][row] += 1
    return {method: {domain: [[*row, n] for row, n in sorted(c.items())] for domain, c in by.items()}
            for method, by in counts.items()}


def _request_rows(trace: Trace):
    """Each request step as (method, domain, generated, tabulated row); see ``with_generated``."""
    domain_of = {(r.labels.method, r.request_id): r.domain for r in trace.requests}
    for step, share, generated in with_generated(trace):
        expanded = round(sum(step.round_widths) / max(len(step.requests), 1))
        domain = domain_of.get((step.labels.method, share.request_id), "default")
        yield (step.labels.method, domain, generated, (share.tree_size, share.accepted_len + 1, step.draft_rounds, expanded))


def with_generated(trace: Trace):
    """Each request step as (step, share, generated): ``generated`` is the request's own
    output already cached (its context less its first step's context, the prompt). Request
    ids restart with each run, and calibration merges runs, so a request is followed by its
    cache: a step continues the request whose cache its context extends by exactly what that
    request last emitted; any other context starts a new one."""
    last: dict[tuple, tuple[int, int, int]] = {}  # (labels, id) -> (first context, context, emitted)
    for step, share in trace.request_steps():
        key = (step.labels, share.request_id)
        seen = last.get(key)
        first = seen[0] if seen is not None and share.context_tokens == seen[1] + seen[2] else share.context_tokens
        last[key] = (first, share.context_tokens, share.emitted)
        yield step, share, share.context_tokens - first


ROW_BINS = 5  # bins of the tabulated rows by output cached (fewer when the trace is short)
ROW_MIN_BIN = 100  # request steps each bin must hold


def quantile_edges(values: list[int], bins: int = ROW_BINS, min_bin: int = ROW_MIN_BIN) -> list[int]:
    """Edges that split ``values`` into up to ``bins`` bins of about equal counts (their
    quantiles), each of at least ``min_bin``; empty when there are too few for two bins. A
    bin is ``searchsorted(edges, v, side="right")``: bin i holds edges[i-1] <= v < edges[i]."""
    bins = min(bins, len(values) // min_bin)
    if bins < 2:
        return []
    ctx = np.sort(np.asarray(values))
    # Edge k: the least context with at least k/bins of the steps below it (ties stay together).
    values = np.unique(ctx)
    below = np.searchsorted(ctx, values, side="left")
    at = np.searchsorted(below, [len(ctx) * k / bins for k in range(1, bins)], side="left")
    edges = sorted({int(values[i]) for i in at if i < len(values)})
    # Ties can still starve a bin (many steps at one context): merge any bin under min_bin.
    counts = np.bincount(np.searchsorted(edges, ctx, side="right"), minlength=len(edges) + 1)
    while len(edges) and counts.min() < min_bin:
        k = int(np.argmin(counts))
        edges.pop(min(k, len(edges) - 1))  # merge bin k with its upper neighbour (the last: lower)
        counts = np.bincount(np.searchsorted(edges, ctx, side="right"), minlength=len(edges) + 1)
    return edges


def acceptance_rows_by_generated(trace: Trace) -> dict[str, dict[str, dict]]:
    """``acceptance_rows`` split by each request step's own output already cached: per
    method and domain, ``{"edges": [...], "rows": [rows of bin 0, rows of bin 1, ...]}`` with
    quantile edges (``quantile_edges``); a method-domain with too few steps for two bins is
    left out (the simulator then draws from its pooled rows)."""
    steps: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for method, domain, generated, row in _request_rows(trace):
        steps[method][domain].append((generated, row))
    out: dict[str, dict[str, dict]] = {}
    for method, by in steps.items():
        for domain, pairs in by.items():
            edges = quantile_edges([g for g, _ in pairs])
            if not edges:
                continue
            counts = [Counter() for _ in range(len(edges) + 1)]
            for c, row in pairs:
                counts[int(np.searchsorted(edges, c, side="right"))][row] += 1
            out.setdefault(method, {})[domain] = {
                "edges": edges, "rows": [[[*row, n] for row, n in sorted(c.items())] for c in counts]}
    return out
