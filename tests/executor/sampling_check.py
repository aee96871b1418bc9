"""Distribution check for the engine's sampling path against exact target probabilities."""

import numpy as np
import torch
from scipy.stats import chisquare

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.sampling import SamplingParams


def exact_second_token(target, prompt, temperature=1.0):
    """P(second generated token) = sum over t1 of p(t1 | prompt) p(t2 | prompt, t1)."""
    with torch.no_grad():
        p1 = torch.softmax(target(torch.tensor([prompt])).logits[0, -1].double() / temperature, -1)
        support = torch.nonzero(p1 > 1e-7).flatten()
        ids = torch.tensor([prompt + [int(t)] for t in support])
        p2 = torch.softmax(target(ids).logits[:, -1].double() / temperature, -1)
    return p1.numpy(), (p1[support, None] * p2).sum(0).numpy()


def sample_engine(target, draft, prompt, num_samples, method="dynamic", seed=0, budget=8):
    config = EngineConfig(method=method, budget=budget, max_batch=16, seed=seed,
                          sampling=SamplingParams(temperature=1.0))
    engine = build_engine(target, draft, config)
    for _ in range(num_samples):
        engine.add_request(prompt, 3)
    out = engine.run()
    firsts = np.array([toks[0] for toks in out.values()])
    seconds = np.array([toks[1] for toks in out.values()])
    return firsts, seconds, engine


def p_value(samples, probs):
    counts = np.bincount(samples, minlength=len(probs)).astype(float)
    expected = probs * len(samples)
    big = expected >= 5  # pool sparse cells so the chi-square approximation holds
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        assert obs[-1] == 0, f"{int(obs[-1])} samples fell on tokens of probability zero"
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp * obs.sum() / exp.sum()).pvalue
