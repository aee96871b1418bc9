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
from specgrove.executor.batch import ForwardBatch
from specgrove.executor.runtime import LeanModel


def _time_forward(model: LeanModel, num_tokens: int, context: int, repeats: int) -> float:
    """Median seconds of one forward of ``num_tokens`` new tokens over ``context`` cached ones,
    in cache row 0 (call before any request holds it)."""
    batch = ForwardBatch([context + num_tokens])
    batch.add(0, context, [1] * num_tokens, range(context, context + num_tokens),
              range(context, context + num_tokens), [range(context, context + j) for j in range(num_tokens)])
    kwargs = batch.build(model.device, select=[(0, j) for j in range(num_tokens)])
    times = []
    for _ in range(repeats + 1):  # the first run warms caches and allocators
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        t0 = time.perf_counter()
        model.forward(**kwargs)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


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
def measure_rank_acceptance(target, draft, token_ids: list[int], num_ranks: int = 8,
                            window: int = 256) -> list[float]:
    """Greedy rank acceptance of ``draft`` against ``target`` (transformers models),
    teacher-forced over ``token_ids`` in windows."""
    hits = np.zeros(num_ranks + 1)  # hits[r]: target token was draft rank r; last = none
    for start in range(0, max(len(token_ids) - 1, 1), window):
        ids = torch.tensor([token_ids[start : start + window]], device=target.device)
        if ids.shape[1] < 2:
            break
        want = target(ids).logits[0].argmax(-1)
        ranks = draft(ids).logits[0].topk(num_ranks, dim=-1).indices
        match = ranks == want[:, None]
        rank = torch.where(match.any(-1), match.float().argmax(-1), torch.tensor(num_ranks))
        hits += np.bincount(rank.cpu().numpy(), minlength=num_ranks + 1)
    remaining = hits.sum() - np.concatenate([[0.0], np.cumsum(hits[:-1])])
    acc = np.divide(hits[:-1], remaining[:-1], out=np.zeros(num_ranks), where=remaining[:-1] > 0)
    return [round(float(a), 4) for a in acc]
