"""The draft side: answers every request's tree expansions, one draft forward per round.

The engine runs the shared speculation step (``specgrove.policies.speculation``) with
``DraftWorker.round`` as its draft callback: each round answers the expansions of the whole
batch with a single forward of the lean draft model, writing each expanded node's K/V after
the request's prefix and remembering its slot. After verification, ``commit`` compacts the
accepted nodes that the draft did compute onto the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from specgrove.executor.forward_batch import ForwardBatch, prompt_batch
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel
from specgrove.executor.sampling import SamplingParams
from specgrove.policies.base import ROOT, DraftTopK, Expansion
from specgrove.tree import Tree, children, depths, path_to


@dataclass
class Growth:
    """One request's draft-side bookkeeping for the current step."""

    seq: RequestState
    base: int  # first slot after the root once ``draft_pending`` is in the cache
    next_slot: int
    has_pending_run: bool = False  # did a round feed draft_pending (the ROOT expansion)?
    node_slot: dict[int, int] = field(default_factory=dict)  # candidate node -> cache slot


class DraftWorker:
    def __init__(self, model: LeanModel) -> None:
        self.model = model

    def prefill(self, seqs: list[RequestState]) -> None:
        """Cache the prompts of new requests, which hold consecutive rows (the first generated
        token is fed later, as pending)."""
        batch = prompt_batch(seqs)
        for s in seqs:
            s.draft_len = len(s.prompt)
        # Only the K/V matter here; one token's logits keep the call shape simple.
        self.model.forward(**batch.build(self.model.device, select=[(seqs[0].row, 0)]))

    @staticmethod
    def begin(seqs: list[RequestState]) -> list[Growth]:
        """Fresh per-step bookkeeping, one ``Growth`` per request in batch order."""
        return [Growth(s, s.draft_len + len(s.draft_pending), s.draft_len + len(s.draft_pending)) for s in seqs]

    def round(self, every: list[Growth], ids: list[int], expansions: list[Expansion]) -> list[DraftTopK]:
        """One draft forward answering ``expansions``; ``ids`` index ``every`` (the whole
        batch) to say whose each one is. The forward spans only the cache rows from the first
        to the last with work this round (rows between them without work are padded): a
        probe's catch-up of one request's pending tokens must not run over every row."""
        busy = [every[i].seq.row for i in ids]
        lo, hi = min(busy), max(busy)
        free = [0] * (hi - lo + 1)
        for st in every:
            if lo <= st.seq.row <= hi:
                free[st.seq.row - lo] = st.next_slot
        batch = ForwardBatch(free, first_row=lo)
        outputs = []  # per expansion: (row, columns of its expanded nodes)
        for i, exp in zip(ids, expansions):
            st = every[i]
            s, nodes = st.seq, exp.nodes.tolist()
            if nodes == [ROOT]:
                # Feed the tokens the draft has not seen yet; the root is the last of them.
                n, start = len(s.draft_pending), s.draft_len
                batch.add(s.row, start, s.draft_pending, range(start, start + n),
                          range(start, start + n), [range(start, start + j) for j in range(n)])
                st.has_pending_run = True
                outputs.append((s.row, [n - 1]))
                continue
            if ROOT in nodes or not st.has_pending_run:
                raise ValueError("a tree policy must expand the root alone, in its first round")
            d = depths(exp.parents)
            root_pos = s.context_len - 1
            slots, visible, positions = [], [], []
            if st.next_slot + len(nodes) >= self.model.cache.max_len:
                raise RuntimeError("the draft tree outgrew the KV cache headroom; raise headroom")
            for v in nodes:
                st.node_slot[v] = st.next_slot
                slots.append(st.next_slot)
                st.next_slot += 1
                visible.append([st.node_slot[a] for a in path_to(exp.parents, v)[:-1]])
                positions.append(root_pos + int(d[v]))
            first = batch.num_queued(s.row)
            batch.add(s.row, st.base, exp.tokens[nodes].tolist(), positions, slots, visible)
            outputs.append((s.row, list(range(first, first + len(nodes)))))
        select = [(r, c) for r, cols in outputs for c in cols]
        logits = self.model.forward_batch(batch, select)
        k_max = min(max(e.k for e in expansions), logits.shape[-1])
        top_p, top_i = self._top_k([every[i].seq.sampling for i in ids], [len(cs) for _, cs in outputs], logits, k_max)
        answers, at = [], 0
        for (_, cs), exp in zip(outputs, expansions):
            answers.append(DraftTopK(top_i[at : at + len(cs), : exp.k], top_p[at : at + len(cs), : exp.k]))
            at += len(cs)
        return answers

    @staticmethod
    def _top_k(params: list[SamplingParams], counts: list[int], logits, k: int):
        """Top-k of each row's distribution, warped as its request samples (the draft must
        propose from the distribution verification assumes); one call per distinct setting."""
        settings = dict.fromkeys(params)
        if len(settings) == 1:  # the common case: one setting for the whole batch, one call
            p, i = params[0].probs(logits).topk(k, dim=-1)
            return p.cpu().numpy().astype(np.float64), i.cpu().numpy()
        rows = np.repeat(np.arange(len(params)), counts)
        top_p = np.empty((len(rows), k))
        top_i = np.empty((len(rows), k), dtype=np.int64)
        for setting in settings:
            mine = np.flatnonzero(np.isin(rows, [j for j, p in enumerate(params) if p == setting]))
            part = logits if len(mine) == len(rows) else logits[torch.from_numpy(mine).to(logits.device)]
            p, i = setting.probs(part).topk(k, dim=-1)
            top_p[mine], top_i[mine] = p.cpu().numpy(), i.cpu().numpy()
        return top_p, top_i

    def commit(self, state: Growth, candidates: Tree, emitted: list[int], num_accepted: int,
               moves: list[tuple[int, int, int]]) -> None:
        """Record the step's outcome; appends (row, src, dst) cache moves to ``moves``."""
        s = state.seq
        if not state.has_pending_run:
            s.draft_pending = s.draft_pending + emitted
            return
        # Accepted path in candidate-node ids (sibling tokens are unique, so tokens find it).
        kids, node, computed = children(candidates.parents), ROOT, []
        for tok in emitted[:num_accepted]:
            node = next(c for c in kids[node] if candidates.tokens[c] == tok)
            if node not in state.node_slot:
                break
            computed.append(node)
        for j, v in enumerate(computed):
            if state.node_slot[v] != state.base + j:
                moves.append((s.row, state.node_slot[v], state.base + j))
        s.draft_len = state.base + len(computed)
        s.draft_pending = emitted[len(computed):]
