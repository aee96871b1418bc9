"""The target side: verifies every request's tree in one packed forward, then compacts.

The verification input is ``specgrove.packing``'s ragged ``PackedBatch``: request r brings its
root (its last accepted token, whose K/V is not cached yet) followed by its tree nodes. Here
it is laid into cache rows: row r's new tokens go to the slots right after its prefix, and the
mask lets each token see the prefix, its ancestors and itself. After acceptance the accepted
nodes' K/V is moved onto the slots right after the root, so the prefix is never recomputed.
"""

from __future__ import annotations

import numpy as np
import torch

from specgrove.executor.forward_batch import ForwardBatch, prompt_batch
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel
from specgrove.executor.verify import Verdict, verify_greedy, verify_sampling
from specgrove.packing import pack_trees
from specgrove.tree import Tree


class TargetWorker:
    def __init__(self, model: LeanModel) -> None:
        self.model = model

    def prefill(self, seqs: list[RequestState]) -> list[int]:
        """Cache the prompts and pick each request's first token."""
        last = [(s.row, len(s.prompt) - 1) for s in seqs]
        logits = self.model.forward(**prompt_batch(seqs).build(self.model.device, select=last))
        out = []
        for i, s in enumerate(seqs):
            s.target_len = len(s.prompt)
            out.append(s.sampling.pick(logits[i], s.generator))
        return out

    def verify(self, seqs: list[RequestState], trees: list[Tree]) -> torch.Tensor:
        """Logits (sum of (n_i + 1), V): each request's root row, then one row per node, request
        after request in ``seqs`` order (no padding rows)."""
        packed = pack_trees(trees, [s.root for s in seqs], [s.target_len for s in seqs])
        batch = ForwardBatch([s.target_len + len(t) + 1 for s, t in zip(seqs, trees)])
        for r, s in enumerate(seqs):
            q0, q1 = packed.query_starts[r], packed.query_starts[r + 1]
            base, own = s.target_len, packed.tree_masks[r]
            # Token j sees the new tokens before it that its tree mask allows (root, ancestors);
            # the forward batch adds the prefix and the token's own slot.
            visible = [(base + np.flatnonzero(own[j, :j])).tolist() for j in range(q1 - q0)]
            batch.add(s.row, base, packed.tokens[q0:q1].tolist(), packed.positions[q0:q1].tolist(),
                      range(base, base + q1 - q0), visible)
        select = [(s.row, c) for s, t in zip(seqs, trees) for c in range(len(t) + 1)]
        return self.model.forward(**batch.build(self.model.device, select=select))

    def accept(self, seqs: list[RequestState], trees: list[Tree], logits: torch.Tensor) -> list[Verdict]:
        """Each request's verdict, by its own sampling parameters (greedy or sampled)."""
        starts = np.cumsum([0] + [len(t) + 1 for t in trees])
        argmax = None
        if any(s.sampling.is_greedy for s in seqs):
            argmax = logits.argmax(-1).cpu().tolist()  # one device->host copy for the batch
        return [
            verify_greedy(t, argmax[a:b]) if s.sampling.is_greedy
            else verify_sampling(t, s.sampling.probs(logits[a:b]), s.generator)
            for s, t, a, b in zip(seqs, trees, starts, starts[1:])
        ]

    @staticmethod
    def commit(seq: RequestState, result: Verdict, moves: list[tuple[int, int, int]]) -> None:
        """Keep the root and the accepted path; appends (row, src, dst) cache moves."""
        base = seq.target_len
        for j, node in enumerate(result.accepted_nodes):
            if node != j:  # already in place when the path is nodes 0, 1, 2, ... (a chain)
                moves.append((seq.row, base + 1 + node, base + 1 + j))
        seq.target_len = base + 1 + result.num_accepted
