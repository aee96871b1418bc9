"""Judging the engine's sampled tokens against the target's exact (warped) law.

Two checks, both with exact probabilities from transformers' own forward of the target:

* ``joint_23``: the joint law of the second and third generated tokens (marginalised over the
  first), ``sum_t1 p(t1) p(t2 | t1) p(t3 | t1, t2)``, against the engine's samples.
* ``rank_counts``: for any set of sampled tokens, each judged against its *own* history's
  conditional law: the token's rank in that law is a categorical draw whose expected counts
  are the summed rank probabilities. Losslessness says every emitted token, given everything
  that happened before it (tree shapes, acceptances, who shared the batch), follows
  ``p(. | history)``; so the check holds for any token chosen by a rule that looks only at the
  past, e.g. "the first token drawn after a compaction of this request's cache row".

The warp is written out here from its definition (softmax at the temperature, then the
smallest top set holding mass >= top_p, renormalised), not taken from the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import chisquare

from tiny_models import perturbed_copy, tiny

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.sampling import SamplingParams


def peaked_pair():
    """A tiny target whose mass sits on a few tokens (sharpness 18), and a draft this close to
    it that proposes them: verification accepts a node for most requests."""
    target = tiny("llama", seed=7, sharpness=18.0)
    return target, perturbed_copy(target, noise=0.005)


def reference_warp(logits: torch.Tensor, temperature: float, top_p: float) -> np.ndarray:
    """(..., V) logits -> (..., V) probabilities of the warped law, float64 numpy."""
    probs = torch.softmax(logits.double() / temperature, dim=-1).numpy()
    if top_p >= 1.0:
        return probs
    out = np.zeros_like(probs)
    flat, flat_out = probs.reshape(-1, probs.shape[-1]), out.reshape(-1, probs.shape[-1])
    for row, dst in zip(flat, flat_out):
        order = np.argsort(-row, kind="stable")
        before = np.cumsum(row[order]) - row[order]  # mass strictly above each token
        keep = order[before < top_p]
        dst[keep] = row[keep] / row[keep].sum()
    return out


@torch.no_grad()
def target_laws(target, sequences: list[list[int]], params: SamplingParams) -> np.ndarray:
    """(N, L, V): the warped next-token law after every prefix of each sequence (equal
    lengths), from transformers' forward."""
    logits = target(torch.tensor(sequences)).logits
    return reference_warp(logits, params.temperature, params.top_p)


def exact_joint_23(target, prompt: list[int], params: SamplingParams) -> np.ndarray:
    """(V, V): P(second token, third token) under the warped target law."""
    p1 = target_laws(target, [prompt], params)[0, -1]
    support = np.flatnonzero(p1 > 0)
    p2 = target_laws(target, [prompt + [int(a)] for a in support], params)[:, -1]  # (S, V)
    joint = np.zeros((len(p1), len(p1)))
    for i, a in enumerate(support):
        seconds = np.flatnonzero(p2[i] > 0)
        p3 = target_laws(target, [prompt + [int(a), int(b)] for b in seconds], params)[:, -1]
        joint[seconds] += p1[a] * p2[i, seconds, None] * p3
    return joint


def chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's test of counts against probabilities (or expected counts, rescaled). Cells
    with expected count < 5 are pooled; a count in a cell of probability zero fails outright."""
    counts, probs = np.asarray(counts, float).ravel(), np.asarray(probs, float).ravel()
    impossible = counts[probs <= 0].sum()
    assert impossible == 0, f"{int(impossible)} samples fell on outcomes of probability zero"
    expected = probs / probs.sum() * counts.sum()
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] < 1e-12:
        obs, exp = obs[:-1], exp[:-1]
    return float(chisquare(obs, exp).pvalue)


def rank_counts(laws: np.ndarray, tokens: np.ndarray, max_rank: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected counts of each sampled token's rank in its own law (ranks >=
    ``max_rank`` pooled into the last cell; tokens of probability zero get their own cell
    of expectation zero). ``laws``: (N, V); ``tokens``: (N,)."""
    order = np.argsort(-laws, axis=1, kind="stable")
    sorted_p = np.take_along_axis(laws, order, axis=1)
    rank = np.argmax(order == tokens[:, None], axis=1)
    zero = laws[np.arange(len(tokens)), tokens] <= 0
    capped = np.minimum(rank, max_rank)
    observed = np.bincount(capped[~zero], minlength=max_rank + 1).astype(float)
    expected = np.concatenate([sorted_p[:, :max_rank].sum(0), [sorted_p[:, max_rank:].sum()]])
    return np.append(observed, zero.sum()), np.append(expected, 0.0)


@dataclass
class EngineRun:
    """What one engine run produced, and what the spies saw (independently of the code under
    test: compaction is inferred from the verdicts, not from the moves the engine made)."""

    prompts: list[list[int]]
    params: list[SamplingParams]
    outputs: list[list[int]]
    first_verdicts: dict[int, int] = field(default_factory=dict)  # request -> nodes accepted
    # request -> (index in its output of the first token drawn after a step whose accepted
    # path had to be compacted while the request sat in a cache row > 0)
    after_compaction: dict[int, int] = field(default_factory=dict)

    def first_acceptance_rate(self) -> float:
        return float(np.mean([n > 0 for n in self.first_verdicts.values()]))


def run_engine(target, draft, prompts: list[list[int]], params: list[SamplingParams], max_new_tokens: int,
               method: str = "dynamic", budget: int = 8, max_batch: int = 16, seed: int = 0,
               options: dict | None = None) -> EngineRun:
    engine = build_engine(target, draft, EngineConfig(method=method, budget=budget, max_batch=max_batch, seed=seed),
                          options)
    ids = [engine.add_request(p, max_new_tokens, s) for p, s in zip(prompts, params)]
    run = EngineRun(prompts, params, [])
    accept, commit = engine.target.accept, engine.target.commit

    def spy_accept(seqs, trees, logits):
        verdicts = accept(seqs, trees, logits)
        for s, v in zip(seqs, verdicts):
            run.first_verdicts.setdefault(s.request_id, v.num_accepted)
        return verdicts

    def spy_commit(seq, verdict, moves):
        needs_move = any(node != j for j, node in enumerate(verdict.accepted_nodes))
        nxt = len(seq.generated) + len(verdict.tokens)
        if seq.row > 0 and needs_move and nxt < seq.max_new_tokens:
            run.after_compaction.setdefault(seq.request_id, nxt)
        commit(seq, verdict, moves)

    engine.target.accept, engine.target.commit = spy_accept, spy_commit
    out = engine.run()
    run.outputs = [out[i] for i in ids]
    return run
