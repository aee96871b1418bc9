"""The target side: verifies every request's tree in one packed forward, then compacts.

Row r of the forward holds request r's root (its last accepted token, whose K/V is not cached
yet) followed by its tree nodes, written at the slots right after its prefix. The mask lets
each token see the prefix, its ancestors and itself. After acceptance the accepted nodes' K/V
is moved onto the slots right after the root, so the prefix is never recomputed.
"""

from __future__ import annotations

import numpy as np
import torch

from specgrove.executor.batch import ForwardBatch
from specgrove.executor.draft_worker import prompt_batch
from specgrove.executor.runtime import LeanModel
from specgrove.executor.sampling import SamplingParams
from specgrove.executor.sequence import Sequence
from specgrove.executor.verify import Acceptance, verify_greedy, verify_sampling
from specgrove.tree import Tree, ancestor_mask, depths


class TargetWorker:
    def __init__(self, model: LeanModel, sampling: SamplingParams) -> None:
        self.model, self.sampling = model, sampling

    def prefill(self, seqs: list[Sequence]) -> list[int]:
        """Cache the prompts and pick each request's first token."""
        logits = self.model.forward(**prompt_batch(seqs).build(self.model.device))
        first = min(s.row for s in seqs)
        out = []
        for s in seqs:
            s.target_len = len(s.prompt)
            out.append(self.sampling.pick(logits[s.row - first, len(s.prompt) - 1], s.generator))
        return out

    def verify(self, seqs: list[Sequence], trees: list[Tree]) -> torch.Tensor:
        """Logits (B, T, V); row ``s.row`` column 0 is after the root, column i + 1 after node i."""
        batch = ForwardBatch([s.target_len + len(t) + 1 for s, t in zip(seqs, trees)])
        for s, tree in zip(seqs, trees):
            base, n = s.target_len, len(tree)
            anc = ancestor_mask(tree.parents)
            # Node i sees the root (slot base) and its strict ancestors (slot base + 1 + a).
            visible = [[base]] + [[base] + (base + 1 + np.flatnonzero(anc[i])[:-1]).tolist() for i in range(n)]
            batch.add(s.row, base, [s.root] + tree.tokens.tolist(),
                      [base] + (base + depths(tree.parents)).tolist(), range(base, base + n + 1), visible)
        return self.model.forward(**batch.build(self.model.device))

    def accept(self, seqs: list[Sequence], trees: list[Tree], logits: torch.Tensor) -> list[Acceptance]:
        if self.sampling.is_greedy:
            argmax = logits.argmax(-1).cpu().tolist()  # one device->host copy for the batch
            return [verify_greedy(t, argmax[s.row][: len(t) + 1]) for s, t in zip(seqs, trees)]
        return [
            verify_sampling(t, self.sampling.probs(logits[s.row, : len(t) + 1]), s.generator)
            for s, t in zip(seqs, trees)
        ]

    @staticmethod
    def commit(seq: Sequence, result: Acceptance, moves: list[tuple[int, int, int]]) -> None:
        """Keep the root and the accepted path; appends (row, src, dst) cache moves."""
        base = seq.target_len
        for j, node in enumerate(result.accepted_nodes):
            if node != j:  # already in place when the path is nodes 0, 1, 2, ... (a chain)
                moves.append((seq.row, base + 1 + node, base + 1 + j))
        seq.target_len = base + 1 + result.num_accepted
