"""The engine's draft side, in its own process: the shared speculation step over a DraftWorker.

The engine talks to its draft through six calls, so a draft in another process
(``executor.parallel.remote_draft``) can stand in for this one without the engine changing:

    prefill(seqs)            new requests joined (rows assigned, prompts to cache)
    propose(seqs)            this step's trees: ``speculate`` with the draft as its callback
    commit(seqs, outcomes)   each request's (emitted tokens, number accepted) from verification
    move_row(seq, new_row)   a request's cache row moves down (rows stay contiguous)
    retire(request_ids)      requests that left the batch
    observe_step(timing)     the step's timing, for the policy that proposed it
"""

from __future__ import annotations

import dataclasses

from specgrove.executor.draft_worker import DraftWorker, Growth
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel
from specgrove.policies.base import TreePolicy
from specgrove.policies.lookup import NgramIndex
from specgrove.policies.speculation import Speculation, speculate


class LocalDraft:
    def __init__(self, model: LeanModel, policy: TreePolicy, split, budget: int) -> None:
        self.worker = DraftWorker(model)
        self.policy, self.split, self.budget = policy, split, budget
        self.growths: list[Growth] = []
        self.max_positions, self.vocab_size = model.max_positions, model.vocab_size
        # A policy that never drafts (``ar``), or no budget to draft with: the draft model
        # neither prefills prompts nor catches up on tokens (the simulator charges it nothing).
        self.idle = not policy.uses_draft(budget)
        self.contexts: dict[int, NgramIndex] = {}  # request id -> its context, for prompt lookup

    @property
    def model(self) -> LeanModel:
        return self.worker.model

    def prefill(self, seqs: list[RequestState]) -> None:
        if self.policy.lookup_length:  # index the prompts now, not in a step the policy times
            for s in seqs:
                self._context(s)
        if self.idle:
            return
        if self.policy.lazy_draft:  # the prompt waits with the root, fed by the first round
            for s in seqs:
                s.draft_pending = s.prompt + s.draft_pending
                s.draft_len = 0
            return
        self.worker.prefill(seqs)

    def propose(self, seqs: list[RequestState]) -> Speculation:
        """Grow, split and select: the step the simulator's exact mode runs too."""
        growths = self.worker.begin(seqs)
        if not self.idle:  # beyond each root, which every round feeds anyway
            self.policy.see_backlog(sum(len(s.draft_pending) - 1 for s in seqs))
        spec = speculate(self.policy, self.split, self.budget, self.budget * len(seqs),
                         [s.target_len for s in seqs],
                         lambda ids, expansions: self.worker.round(growths, ids, expansions),
                         lookup=lambda i, k: self.lookup(seqs[i], k))
        self.growths = growths
        caught_up = sum(len(g.seq.draft_pending) - 1 for g in growths if g.has_pending_run)
        return dataclasses.replace(spec, catch_up_tokens=caught_up) if caught_up else spec

    def lookup(self, seq: RequestState, k: int) -> tuple[list[int], int]:
        """Up to ``k`` tokens proposed from ``seq``'s own context (prompt, then generated), and
        the order of their match."""
        index = self._context(seq)
        index.extend(seq.generated[len(index) - len(seq.prompt):])
        return index.match(k)

    def _context(self, seq: RequestState) -> NgramIndex:
        index = self.contexts.get(seq.request_id)
        if index is None:
            index = self.contexts[seq.request_id] = NgramIndex(self.policy.max_ngram, self.policy.min_ngram)
            index.extend(seq.prompt)
        return index

    def commit(self, seqs: list[RequestState], spec: Speculation, outcomes: list[tuple[list[int], int]]) -> None:
        if self.idle:
            return
        moves: list[tuple[int, int, int]] = []
        for growth, candidates, (tokens, num_accepted) in zip(self.growths, spec.candidates, outcomes):
            self.worker.commit(growth, candidates, tokens, num_accepted, moves)
        self.model.cache.apply(moves)

    def move_row(self, seq: RequestState, new_row: int) -> None:
        self.model.cache.copy_row(seq.row, new_row, seq.draft_len)

    def observe_step(self, timing) -> None:
        """The engine's timing of the step just run, for the policy that proposed it (an online
        policy learns its costs and its lookup acceptance from it)."""
        self.policy.observe_step(timing)

    def retire(self, request_ids: list[int]) -> None:
        """Forget their lookup contexts (the request states are the engine's own)."""
        for rid in request_ids:
            self.contexts.pop(rid, None)
