"""The decoding loop: admit, grow trees, verify them in one forward, accept, compact, stream.

    step():  admit new requests (prefill)
             candidates = draft.grow(batch, tree policy)        one draft forward per depth
             budgets    = batch-budget policy(candidate scores)
             trees      = tree policy.select(candidates, budget)
             results    = target.accept(target.verify(trees))   one target forward
             compact both KV caches, emit tokens, retire finished requests
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from specgrove import registry
from specgrove.executor.draft_worker import DraftWorker
from specgrove.executor.runtime import LeanModel
from specgrove.executor.sampling import SamplingParams
from specgrove.executor.sequence import Sequence
from specgrove.executor.target_worker import TargetWorker
from specgrove.policies.base import TreePolicy
from specgrove.types import StepRecord


@dataclass
class EngineConfig:
    method: str = "dynamic"  # a registered tree policy
    budget: int = 16  # tree nodes per request per step (the batch total is budget * batch)
    batch_budget: str = "uniform"
    max_batch: int = 16
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    eos_token_id: int | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpecEngine:
    def __init__(self, target: LeanModel, draft: LeanModel, config: EngineConfig,
                 policy: TreePolicy, on_step: Callable[[StepRecord], None] | None = None) -> None:
        if target.vocab_size != draft.vocab_size:
            raise ValueError(f"target vocabulary ({target.vocab_size}) != draft vocabulary ({draft.vocab_size})")
        self.config, self.policy = config, policy
        self.split = registry.get("batch-budget", config.batch_budget)
        self.target = TargetWorker(target, config.sampling)
        self.draft = DraftWorker(draft, config.sampling)
        # Positions must stay inside both models' context; cache slots have extra headroom for
        # the tree nodes of a step (slots are not positions, see runtime.kv).
        self.max_positions = min(target.max_positions, draft.max_positions)
        self.waiting: deque[Sequence] = deque()
        self.active: list[Sequence] = []
        self.finished: dict[int, Sequence] = {}
        self.on_step = on_step
        self.step_index = 0
        self._next_id = 0

    # ---- requests -----------------------------------------------------------------------
    def add_request(self, prompt: list[int], max_new_tokens: int) -> int:
        if not prompt:
            raise ValueError("the prompt is empty")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if len(prompt) + max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                f"model context ({self.max_positions} tokens)"
            )
        rid = self._next_id
        self._next_id += 1
        gen = None
        if not self.config.sampling.is_greedy:
            # One generator per request: its tokens do not depend on who shares the batch.
            gen = torch.Generator(device=self.target.model.device).manual_seed(self.config.seed * 1_000_003 + rid)
        self.waiting.append(Sequence(rid, list(prompt), max_new_tokens, generator=gen, arrival_s=time.perf_counter()))
        return rid

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.active)

    def _admit(self) -> list[tuple[int, list[int]]]:
        new = []
        while self.waiting and len(self.active) + len(new) < self.config.max_batch:
            seq = self.waiting.popleft()
            seq.row = len(self.active) + len(new)
            new.append(seq)
        if not new:
            return []
        first_tokens = self.target.prefill(new)
        self.draft.prefill(new)
        out = []
        for seq, tok in zip(new, first_tokens):
            seq.first_token_s = time.perf_counter()
            out.append((seq.request_id, self._emit(seq, [tok])))
            seq.draft_pending = [tok]  # the draft cached the prompt; the root is still to feed
        self.active += new
        return out

    def _emit(self, seq: Sequence, tokens: list[int]) -> list[int]:
        tokens = tokens[: seq.remaining]
        eos = self.config.eos_token_id
        if eos is not None and eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
            seq.is_finished = True
        seq.generated += tokens
        if seq.remaining <= 0:
            seq.is_finished = True
        return tokens

    def _retire(self) -> None:
        """Drop finished requests, moving the last active rows into the holes."""
        keep = [s for s in self.active if not s.is_finished]
        for s in self.active:
            if s.is_finished:
                s.finish_s = time.perf_counter()
                self.finished[s.request_id] = s
        for new_row, s in enumerate(keep):
            if s.row != new_row:
                self.target.model.cache.copy_row(s.row, new_row, s.target_len)
                self.draft.model.cache.copy_row(s.row, new_row, s.draft_len)
                s.row = new_row
        self.active = keep

    # ---- one step ---------------------------------------------------------------------------
    def step(self) -> list[tuple[int, list[int]]]:
        """Run one decoding step; returns (request id, new tokens) for every request that got any."""
        out = self._admit()
        self._retire()  # a prompt can finish at its first token
        if not self.active:
            return out
        seqs, cfg, device = self.active, self.config, self.target.model.device
        t0 = time.perf_counter()
        rounds_before = self.draft.num_rounds
        candidates, growths = self.draft.grow(seqs, self.policy, cfg.budget)
        budgets = self.split([c.cum_probs for c in candidates], cfg.budget * len(seqs))
        trees = [self.policy.select(c, b, s.context_len) for c, b, s in zip(candidates, budgets, seqs)]
        _sync(device)
        t1 = time.perf_counter()
        logits = self.target.verify(seqs, trees)
        results = self.target.accept(seqs, trees, logits)
        _sync(device)
        t2 = time.perf_counter()
        target_moves, draft_moves = [], []
        for seq, growth, cand, res in zip(seqs, growths, candidates, results):
            self.target.commit(seq, res, target_moves)
            self.draft.commit(growth, cand, res.tokens, res.num_accepted, draft_moves)
        self.target.model.cache.apply(target_moves)
        self.draft.model.cache.apply(draft_moves)
        tokens_in_forward = sum(len(t) + 1 for t in trees)
        for seq, tree, res in zip(seqs, trees, results):
            context = seq.context_len
            emitted = self._emit(seq, res.tokens)
            seq.num_steps += 1
            out.append((seq.request_id, emitted))
            if self.on_step is not None:
                self.on_step(StepRecord(
                    request_id=seq.request_id, step=self.step_index, tree_size=len(tree),
                    depth=tree.depth, accepted_len=res.num_accepted, draft_ms=(t1 - t0) * 1e3,
                    verify_ms=(t2 - t1) * 1e3, batch_size=len(seqs),
                    tokens_in_forward=tokens_in_forward, context_len=context,
                    extra={"emitted": len(emitted), "draft_rounds": self.draft.num_rounds - rounds_before},
                ))
        self.step_index += 1
        self._retire()
        return out

    def run(self) -> dict[int, list[int]]:
        """Step until every request has finished; returns generated tokens by request id."""
        while self.has_work:
            self.step()
        return {rid: s.generated for rid, s in sorted(self.finished.items())}
