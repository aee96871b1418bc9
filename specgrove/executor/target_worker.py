"""The target side: verifies every request's tree in one packed forward, then compacts.

The verification input is ragged, laid out as ``specgrove.packing``'s ``PackedBatch``: request r
brings its root (its last accepted token, whose K/V is not cached yet) followed by its tree
nodes. Its new tokens go to the slots right after its prefix in its cache row, and each sees the
prefix, its ancestors and itself (``specgrove.kernels`` builds that layout on the device). After acceptance the accepted
nodes' K/V is moved onto the slots right after the root, so the prefix is never recomputed.
"""

from __future__ import annotations

import numpy as np
import torch

from specgrove.executor.forward_batch import ForwardBatch, prompt_batch
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel
from specgrove.executor.verify import Verdict, verify_greedy, verify_sampling
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
        after request in ``seqs`` order (no padding rows).

        The forward is ragged: the host sends the tokens and parent arrays (one copy), and the
        kernels build positions, slots and the ancestor bitmask on the device. A plain step
        (no request has a tree) on a model with CUDA graphs runs the dense forward instead,
        which a graph replays (``runtime.graphs``)."""
        if self.model.graphs is not None and not any(len(t) for t in trees):
            return self._decode(seqs)
        sizes = [len(t) + 1 for t in trees]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        T, B = int(starts[-1]), len(seqs)
        tokens, parents = np.empty(T, dtype=np.int64), np.empty(T, dtype=np.int64)
        for s, t, a in zip(seqs, trees, starts):
            tokens[a], parents[a] = s.root, -1  # the root, then its nodes (parent indices shift by one)
            tokens[a + 1:a + 1 + len(t)], parents[a + 1:a + 1 + len(t)] = t.tokens, t.parents + 1
        prefix = [s.target_len for s in seqs]
        # One buffer, one host-to-device copy: tokens | parents | starts | prefix lengths | rows.
        host = np.concatenate([tokens, parents, starts, prefix, [s.row for s in seqs]]).astype(np.int64)
        dev = torch.from_numpy(host).to(self.model.device)
        parents_d, starts_d, prefix_d, rows_d = dev[T:].to(torch.int32).split([T, B + 1, B, B])
        return self.model.forward_tree(dev[:T], parents_d, starts_d, prefix_d, rows_d, max(sizes),
                                       max(p + n for p, n in zip(prefix, sizes)))

    def _decode(self, seqs: list[RequestState]) -> torch.Tensor:
        """Each request's root at its next slot and position, seeing its prefix: one token per
        row of the dense forward (rows between without a request write the padding slot)."""
        first, last = min(s.row for s in seqs), max(s.row for s in seqs)
        batch = ForwardBatch([self.model.cache.max_len - 1] * (last - first + 1), first_row=first)
        for s in seqs:
            at = s.target_len
            batch.add(s.row, at, [s.root], [at], [at], [()])
        return self.model.forward_batch(batch, [(s.row, 0) for s in seqs])

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
