"""Losslessness of tree verification.

Greedy: equality with the argmax path, and with target-only greedy decoding.
Sampling: the joint law of the first two emitted tokens equals the target's, by a chi-square
test with a fixed seed; a negative control with the residual left un-renormalised (sampling
from p instead of norm(max(p - q, 0)) after a rejection) must fail the same test.
"""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from strategies import trees

from specgrove import registry
from specgrove.executor import verify
from specgrove.executor.sampling import warp_probs
from specgrove.executor.verify import verify_greedy, verify_sampling
from specgrove.policies import grow_tree
from specgrove.policies.synthetic import MarkovPair
from specgrove.tree import Tree, path_to

VOCAB = 5


@given(trees(max_nodes=20, vocab=VOCAB), st.integers(0, 2**31 - 1))
@settings(max_examples=200, deadline=None)
def test_greedy_accepts_the_longest_argmax_path(tree, seed):
    rng = np.random.default_rng(seed)
    argmax = rng.integers(0, VOCAB, size=len(tree) + 1)
    result = verify_greedy(tree, torch.tensor(argmax))
    # Brute force: the deepest node whose every token equals the argmax after its parent.
    best = []
    for i in range(len(tree)):
        path = path_to(tree.parents, i)
        rows = [0] + [p + 1 for p in path[:-1]]
        if all(tree.tokens[n] == argmax[r] for n, r in zip(path, rows)) and len(path) > len(best):
            best = path
    assert result.accepted_nodes == best
    last_row = best[-1] + 1 if best else 0
    assert result.tokens == [int(tree.tokens[n]) for n in best] + [int(argmax[last_row])]


@pytest.mark.parametrize("policy", ["ar", "chain", "static", "sequoia", "dynamic"])
def test_greedy_speculation_equals_target_greedy(policy):
    # A draft that often disagrees with the target (its top-1 is the target's argmax for
    # under half the tokens), from many starting tokens so the greedy paths visit many states:
    # verification must reject proposals as well as accept them, and still equal target greedy.
    pair = MarkovPair.random(vocab=40, seed=11, agreement=0.4)
    target = torch.tensor(pair.target)
    tree_policy = registry.create("tree", policy)
    disagreed = accepted = 0
    for start in range(0, 40, 3):
        reference = [start]
        for _ in range(16):
            reference.append(int(np.argmax(pair.target[reference[-1]])))
        out = [start]
        while len(out) < len(reference):
            tree = grow_tree(tree_policy, pair.drafter(out[-1]), budget=12)
            rows = target[torch.tensor(np.concatenate([[out[-1]], tree.tokens]))]
            verdict = verify_greedy(tree, rows.argmax(-1))
            if len(tree):
                disagreed += int(tree.tokens[0] != int(rows[0].argmax()))
            accepted += verdict.num_accepted > 0
            out += verdict.tokens
        assert out[: len(reference)] == reference
    if policy != "ar":
        assert disagreed >= 10 and accepted >= 10, (disagreed, accepted)


# ---- sampling ------------------------------------------------------------------------------

def _random_tree(rng, pair, root, sampled: bool) -> tuple[Tree, np.ndarray | None]:
    """A random tree under ``root``. sampled=True: siblings drawn without replacement from the
    draft Q (returns Q's rows for the verifier); False: the draft's top-``width`` tokens, as
    top-k trees choose them (uniformly random children would hide biases by symmetry)."""
    parents, tokens = [], []
    frontier = [(-1, root)]
    while frontier and len(parents) < 8:
        node, tok = frontier.pop(0)
        width = int(rng.integers(0, 4))
        if sampled:
            kids = rng.choice(VOCAB, size=width, replace=False, p=pair.draft[tok])
        else:
            kids = np.argsort(-pair.draft[tok], kind="stable")[:width]
        for k in kids.tolist():
            parents.append(node)
            tokens.append(k)
            frontier.append((len(parents) - 1, k))
    tree = Tree(np.array(parents, dtype=np.int64), np.array(tokens, dtype=np.int64))
    draft_rows = pair.node_rows(pair.draft, root, tree.tokens) if sampled else None
    return tree, draft_rows


def _first_two_tokens(pair, sampled, num_samples, seed):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    counts = np.zeros((VOCAB, VOCAB))
    for _ in range(num_samples):
        out = [0]
        while len(out) < 3:
            tree, q_rows = _random_tree(rng, pair, out[-1], sampled)
            p_rows = torch.tensor(pair.node_rows(pair.target, out[-1], tree.tokens))
            q = None if q_rows is None else torch.tensor(q_rows)
            out += verify_sampling(tree, p_rows, gen, q).tokens
        counts[out[1], out[2]] += 1
    return counts


def _p_value(pair, counts):
    expected = pair.target[0][:, None] * pair.target * counts.sum()
    big = expected.ravel() >= 5  # pool sparse cells so chi-square's approximation holds
    obs = np.append(counts.ravel()[big], counts.ravel()[~big].sum())
    exp = np.append(expected.ravel()[big], expected.ravel()[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp).pvalue


PAIR = MarkovPair.random(vocab=VOCAB, seed=5, agreement=0.5, peak=1.0)
NUM = 6000


@pytest.mark.parametrize("sampled", [True, False], ids=["drawn-from-q", "deterministic"])
def test_sampling_preserves_the_target_distribution(sampled):
    assert _p_value(PAIR, _first_two_tokens(PAIR, sampled, NUM, seed=1)) > 1e-3


@pytest.mark.parametrize("sampled", [True, False], ids=["drawn-from-q", "deterministic"])
def test_negative_control_unnormalised_residual_fails(monkeypatch, sampled):
    # The classic bug: accept with min(1, p/q) but, after a rejection, sample from p itself
    # instead of the residual norm(max(p - q, 0)). The same test must catch it.
    monkeypatch.setattr(verify, "_residual", lambda p, q: p)
    assert _p_value(PAIR, _first_two_tokens(PAIR, sampled, NUM, seed=1)) < 1e-6


def test_sampling_is_deterministic_for_a_seed():
    a = _first_two_tokens(PAIR, True, 200, seed=9)
    b = _first_two_tokens(PAIR, True, 200, seed=9)
    np.testing.assert_array_equal(a, b)


def test_warp_top_p_and_temperature():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    np.testing.assert_allclose(warp_probs(logits, 1.0).numpy(), [0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(warp_probs(logits, 1.0, top_p=0.8).numpy(), [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(warp_probs(logits, 1.0, top_p=0.81).numpy(), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])
    sharp = warp_probs(logits, 0.5).numpy()
    assert sharp[0] > 0.5 and np.isclose(sharp.sum(), 1.0)
    with pytest.raises(ValueError):
        warp_probs(logits, 0.0)
