"""Measurements a policy needs from the running pair: step costs and rank acceptance.

* ``measure_cost_model``: times target forwards and draft rounds of several widths on the
  running device and fits the ``AffineCostModel`` that ``dynamic-cost`` optimises against.
* ``measure_rank_acceptance``: Sequoia's acceptance vector, i.e. for each draft rank r, how
  often the target's greedy token is the draft's rank-r token given ranks < r were not.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from specgrove.cost import AffineCostModel
from specgrove.executor.forward_batch import ForwardBatch
from specgrove.executor.runtime import LeanModel


def forward_kwargs(model: LeanModel, rows: int, num_tokens: int, context: int) -> dict:
    """A forward of ``num_tokens`` new tokens in each of cache rows 0..rows-1 over ``context``
    cached slots each (whatever they hold: only time is measured), with every new token's
    logits read, as a verification or a draft round reads them."""
    batch = ForwardBatch([context + num_tokens] * rows)
    for row in range(rows):
        batch.add(row, context, [1] * num_tokens, range(context, context + num_tokens),
                  range(context, context + num_tokens), [range(context, context + j) for j in range(num_tokens)])
    return batch.build(model.device, select=[(r, j) for r in range(rows) for j in range(num_tokens)])


def median_forward_s(model: LeanModel, kwargs: dict, repeats: int, warmups: int = 1) -> float:
    """Median seconds of ``model.forward(**kwargs)`` over ``repeats`` runs after ``warmups``
    untimed ones (caches, allocators, kernel selection)."""
    times = []
    for _ in range(warmups + repeats):
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        t0 = time.perf_counter()
        model.forward(**kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[warmups:]))


def _time_forward(model: LeanModel, num_tokens: int, context: int, repeats: int) -> float:
    """Median seconds of one forward of ``num_tokens`` new tokens over ``context`` cached ones,
    in cache row 0 (call before any request holds it)."""
    return median_forward_s(model, forward_kwargs(model, 1, num_tokens, context), repeats)


def _fit(model: LeanModel, widths: list[int], contexts: list[int], repeats: int) -> tuple[float, float, float]:
    rows, ys = [], []
    for c in contexts:
        for w in widths:
            rows.append([1.0, w, c])
            ys.append(_time_forward(model, w, c, repeats))
    coef, *_ = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)
    return tuple(float(max(x, 0.0)) for x in coef)  # type: ignore[return-value]


def measure_cost_model(target: LeanModel, draft: LeanModel, repeats: int = 5) -> AffineCostModel:
    t_base, t_tok, t_ctx = _fit(target, [1, 8, 32, 64], [32, 256], repeats)
    d_base, d_tok, d_ctx = _fit(draft, [1, 4, 16], [32, 256], repeats)
    return AffineCostModel(t_base, t_tok, d_base, d_tok, t_ctx, d_ctx)


@torch.inference_mode()
def _teacher_forced(target, draft, token_ids: list[int], num_ranks: int, window: int = 256):
    """Per position: the draft's top-``num_ranks`` probabilities and which rank (if any)
    holds the target's greedy token. Teacher-forced over ``token_ids`` in windows."""
    probs, hit_rank = [], []
    for start in range(0, max(len(token_ids) - 1, 1), window):
        ids = torch.tensor([token_ids[start : start + window]], device=target.device)
        if ids.shape[1] < 2:
            break
        want = target(ids).logits[0].argmax(-1)
        top = torch.softmax(draft(ids).logits[0].double(), -1).topk(num_ranks, dim=-1)
        match = top.indices == want[:, None]
        hit_rank.append(torch.where(match.any(-1), match.double().argmax(-1), torch.tensor(-1)).cpu().numpy())
        probs.append(top.values.cpu().numpy())
    return np.concatenate(probs), np.concatenate(hit_rank)


def measure_rank_acceptance(target, draft, token_ids: list[int], num_ranks: int = 8) -> list[float]:
    """Sequoia's acceptance vector for greedy decoding: entry r is the chance that the
    target's token is the draft's rank-r proposal (disjoint events, so they sum to <= 1)."""
    _, hit_rank = _teacher_forced(target, draft, token_ids, num_ranks)
    hits = np.bincount(hit_rank[hit_rank >= 0], minlength=num_ranks)
    return [round(float(h) / max(len(hit_rank), 1), 4) for h in hits]


def measure_confidence_map(target, draft, token_ids: list[int], num_ranks: int = 3,
                                   edges: tuple[float, ...] = (0, .05, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1),
                                   min_count: int = 20) -> dict:
    """How often a draft proposal of rank r and probability q is the target's greedy token,
    per rank (the last row pools ranks >= num_ranks) and probability bin: the
    ``Calibration`` that lets dynamic trees rank nodes by expected acceptance."""
    probs, hit_rank = _teacher_forced(target, draft, token_ids, 8)
    nbins = len(edges) - 1
    mids = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    rows = []
    for r in range(num_ranks):
        cols = slice(r, r + 1) if r < num_ranks - 1 else slice(r, None)
        q = probs[:, cols]
        hit = (np.arange(probs.shape[1])[None, cols] == hit_rank[:, None]).astype(float)
        bins = np.clip(np.searchsorted(edges, q.ravel(), side="right") - 1, 0, nbins - 1)
        count = np.bincount(bins, minlength=nbins)
        hits = np.bincount(bins, weights=hit.ravel(), minlength=nbins)
        # Sparse bins fall back to the identity (acceptance = probability); the rest is measured,
        # and more confidence never means less acceptance.
        acc = np.maximum.accumulate(np.where(count >= min_count, hits / np.maximum(count, 1), mids))
        rows.append([round(float(a), 4) for a in acc])
    return {"edges": [float(e) for e in edges], "acceptance": rows}
