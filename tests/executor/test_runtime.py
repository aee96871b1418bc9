"""The lean runtime must match transformers' own forward on the same weights, including
tree attention (each node sees exactly its path) and KV compaction."""

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import numpy as np
import torch
from tiny_models import VOCAB, tiny

from specgrove.executor.runtime import from_hf
from specgrove.packing import tree_mask
from specgrove.tree import Tree, depths, path_to


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def prefill(lean, prompts):
    """Causal prefill of several prompts, one per cache row, padded to the longest."""
    B, T = len(prompts), max(len(p) for p in prompts)
    tokens = torch.zeros(B, T, dtype=torch.long)
    positions = torch.zeros(B, T, dtype=torch.long)
    slots = torch.full((B, T), lean.cache.max_len - 1, dtype=torch.long)  # padding -> scratch slot
    mask = torch.zeros(B, T, lean.cache.max_len, dtype=torch.bool)
    for b, p in enumerate(prompts):
        n = len(p)
        tokens[b, :n] = torch.tensor(p)
        positions[b, :n] = torch.arange(n)
        slots[b, :n] = torch.arange(n)
        mask[b, :n, :n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        mask[b, n:, -1] = True
    return lean.forward(tokens, positions, slots, mask, lean.cache.max_len)


def test_prefill_matches_transformers(family):
    model = tiny(family)
    lean = from_hf(model, max_batch=3, headroom=8)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (9, 4, 13)]
    logits = prefill(lean, prompts)
    for b, p in enumerate(prompts):
        torch.testing.assert_close(logits[b, : len(p)], hf_logits(model, p), atol=2e-5, rtol=1e-4)


def test_tree_attention_and_compaction_match_paths(family):
    model = tiny(family, seed=1)
    lean = from_hf(model, max_batch=1, headroom=8)
    prompt = [5, 17, 3, 44, 8]
    prefix, root = prompt[:-1], prompt[-1]
    prefill(lean, [prefix])
    tree = Tree([-1, -1, 0, 0, 2, 1], [11, 12, 13, 14, 15, 16])
    n, base = len(tree), len(prefix)
    tokens = torch.tensor([[root] + tree.tokens.tolist()])
    positions = torch.tensor([[base] + (base + depths(tree.parents)).tolist()])
    slots = torch.arange(base, base + n + 1)[None]
    mask = torch.zeros(1, n + 1, 64, dtype=torch.bool)
    mask[0, :, :base] = True
    mask[0, :, base : base + n + 1] = torch.from_numpy(tree_mask(tree))
    logits = lean.forward(tokens, positions, slots, mask, 64)[0]
    torch.testing.assert_close(logits[0], hf_logits(model, prompt)[-1], atol=2e-5, rtol=1e-4)
    for i in range(n):
        path = prompt + tree.tokens[path_to(tree.parents, i)].tolist()
        torch.testing.assert_close(logits[i + 1], hf_logits(model, path)[-1], atol=2e-5, rtol=1e-4)

    # Accept the path root -> 0 -> 2 -> 4, compact it behind the prefix, decode one more token.
    accepted = [0, 2, 4]
    src = torch.tensor([base + 1 + a for a in accepted])
    dst = torch.arange(base + 1, base + 1 + len(accepted))
    lean.cache.move(torch.zeros(len(accepted), dtype=torch.long), src, dst)
    length = base + 1 + len(accepted)
    nxt = 7
    mask = torch.zeros(1, 1, 64, dtype=torch.bool)
    mask[0, 0, : length + 1] = True
    out = lean.forward(torch.tensor([[nxt]]), torch.tensor([[length]]), torch.tensor([[length]]), mask, 64)
    seq = prompt + tree.tokens[accepted].tolist() + [nxt]
    torch.testing.assert_close(out[0, 0], hf_logits(model, seq)[-1], atol=2e-5, rtol=1e-4)
