"""The decoding loop: admit, speculate, verify the trees in one forward, accept, compact, stream.

    step():  admit new requests in the scheduler policy's order (prefill)
             speculation = speculate(tree policy, batch-budget policy, draft rounds)
                           -- the step the simulator runs too: grow, split, select
             verdicts    = target.accept(target.verify(trees))   one target forward
             compact both KV caches, emit tokens, retire finished requests
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from specgrove import registry
from specgrove.executor.draft_worker import DraftWorker
from specgrove.executor.measure import measure_cost_model
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel, from_hf
from specgrove.executor.sampling import SamplingParams
from specgrove.executor.target_worker import TargetWorker
from specgrove.policies.base import TreePolicy
from specgrove.policies.speculation import Speculation, speculate
from specgrove.trace import Labels, PrefillRecord, Record, RequestShare, RequestTimes, StepRecord


@dataclass
class EngineConfig:
    method: str = "dynamic"  # a registered tree policy
    budget: int = 16  # tree nodes per request per step (the batch total is budget * batch)
    batch_budget: str = "uniform"
    max_batch: int = 16
    sampling: SamplingParams = field(default_factory=SamplingParams)  # requests' default
    seed: int = 0
    eos_token_id: int | None = None
    scheduler: str = "fcfs"  # a registered scheduler policy: who is admitted first


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpecEngine:
    def __init__(self, target: LeanModel, draft: LeanModel, config: EngineConfig,
                 policy: TreePolicy, on_trace: Callable[[Record], None] | None = None) -> None:
        if target.vocab_size != draft.vocab_size:
            raise ValueError(f"target vocabulary ({target.vocab_size}) != draft vocabulary ({draft.vocab_size})")
        self.config, self.policy = config, policy
        self.split = registry.get("batch-budget", config.batch_budget)
        self.scheduler = registry.create("scheduler", config.scheduler)
        self.target = TargetWorker(target)
        self.draft = DraftWorker(draft)
        # Positions must stay inside both models' context; cache slots have extra headroom for
        # the tree nodes of a step (slots are not positions, see runtime.kv).
        self.max_positions = min(target.max_positions, draft.max_positions)
        self.waiting: list[RequestState] = []
        self.active: list[RequestState] = []
        self.finished: dict[int, RequestState] = {}
        self.on_trace = on_trace  # gets every step, prefill and finished request (specgrove.trace)
        self.labels = Labels(config.method, config.max_batch)
        self.step_index = 0
        self._next_id = 0

    # ---- requests -----------------------------------------------------------------------
    def add_request(self, prompt: list[int], max_new_tokens: int, sampling: SamplingParams | None = None,
                    seed: int | None = None, deadline_s: float | None = None, ignore_eos: bool = False) -> int:
        """Queue a request; ``sampling`` defaults to the config's, ``seed`` (sampling) to one
        derived from the config's seed and the request id; ``deadline_s`` is absolute
        (``time.perf_counter()`` seconds), for deadline-aware schedulers; ``ignore_eos``
        generates ``max_new_tokens`` whatever comes."""
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
        sampling = sampling or self.config.sampling
        gen = None
        if not sampling.is_greedy:
            # One generator per request: its tokens do not depend on who shares the batch.
            gen = torch.Generator(device=self.target.model.device)
            gen.manual_seed(self.config.seed * 1_000_003 + rid if seed is None else seed)
        self.waiting.append(RequestState(rid, list(prompt), max_new_tokens, sampling, gen, deadline_s, ignore_eos,
                                         arrival_s=time.perf_counter()))
        return rid

    def cancel(self, request_id: int) -> bool:
        """Stop a request between steps (its cache row is freed at the next step); returns
        whether it was still waiting or running."""
        for i, seq in enumerate(self.waiting):
            if seq.request_id == request_id:
                del self.waiting[i]
                seq.is_finished = seq.is_cancelled = True
                seq.finish_s = time.perf_counter()
                self.finished[request_id] = seq
                return True
        for seq in self.active:
            if seq.request_id == request_id and not seq.is_finished:
                seq.is_finished = seq.is_cancelled = True
                return True
        return False

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.active)

    def _admit(self) -> list[tuple[int, list[int]]]:
        free = self.config.max_batch - len(self.active)
        if not self.waiting or free <= 0:
            return []
        now = time.perf_counter()
        order = self.scheduler.order([s.snapshot() for s in self.waiting], now)[:free]
        new = [self.waiting[i] for i in order]
        taken = set(order)
        self.waiting = [s for i, s in enumerate(self.waiting) if i not in taken]
        for j, seq in enumerate(new):
            seq.row = len(self.active) + j
            seq.admitted_s = now
        first_tokens = self.target.prefill(new)
        _sync(self.target.model.device)
        t1 = time.perf_counter()
        self.draft.prefill(new)
        _sync(self.target.model.device)
        out = []
        t2 = time.perf_counter()
        if self.on_trace is not None:
            self.on_trace(PrefillRecord(self.step_index, now, t2, len(new), sum(len(s.prompt) for s in new),
                                        (t1 - now) * 1e3, (t2 - t1) * 1e3, self.labels))
        now = t2
        for seq, tok in zip(new, first_tokens):
            seq.first_token_s = now
            out.append((seq.request_id, self._emit(seq, [tok])))
            seq.draft_pending = [tok]  # the draft cached the prompt; the root is still to feed
        self.active += new
        return out

    def _emit(self, seq: RequestState, tokens: list[int]) -> list[int]:
        tokens = tokens[: seq.remaining]
        eos = None if seq.ignore_eos else self.config.eos_token_id
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
        now = time.perf_counter()
        for s in self.active:
            if s.is_finished:
                s.finish_s = now
                self.finished[s.request_id] = s
                if self.on_trace is not None and not s.is_cancelled:
                    self.on_trace(RequestTimes(s.request_id, len(s.prompt), len(s.generated), s.arrival_s,
                                               s.admitted_s, s.first_token_s, s.finish_s, labels=self.labels))
        for new_row, s in enumerate(keep):
            if s.row != new_row:
                self.target.model.cache.copy_row(s.row, new_row, s.target_len)
                self.draft.model.cache.copy_row(s.row, new_row, s.draft_len)
                s.row = new_row
        self.active = keep

    # ---- one step ---------------------------------------------------------------------------
    def speculate(self, seqs: list[RequestState]) -> tuple[Speculation, list]:
        """The shared speculation step on the real draft; returns it and the draft's growths."""
        cfg = self.config
        growths = self.draft.begin(seqs)
        spec = speculate(self.policy, self.split, cfg.budget, cfg.budget * len(seqs),
                         [s.target_len for s in seqs],
                         lambda ids, expansions: self.draft.round(growths, ids, expansions))
        return spec, growths

    def admit(self) -> list[tuple[int, list[int]]]:
        """Free finished rows, admit waiting requests (prefill); returns their first tokens."""
        self._retire()  # cancelled requests free their rows before admission
        out = self._admit()
        self._retire()  # a prompt can finish at its first token
        return out

    def step(self) -> list[tuple[int, list[int]]]:
        """Run one decoding step; returns (request id, new tokens) for every request that got any."""
        return self.admit() + self.decode()

    def decode(self) -> list[tuple[int, list[int]]]:
        """One speculative step of the running batch (a server streams ``admit``'s first tokens
        before it)."""
        out: list[tuple[int, list[int]]] = []
        if not self.active:
            return out
        seqs, device = self.active, self.target.model.device
        cached = [s.target_len for s in seqs]  # before this step, for the trace
        t0 = time.perf_counter()
        spec, growths = self.speculate(seqs)
        trees = spec.trees
        _sync(device)
        t1 = time.perf_counter()
        logits = self.target.verify(seqs, trees)
        verdicts = self.target.accept(seqs, trees, logits)
        _sync(device)
        t2 = time.perf_counter()
        target_moves, draft_moves = [], []
        for seq, growth, cand, verdict in zip(seqs, growths, spec.candidates, verdicts):
            self.target.commit(seq, verdict, target_moves)
            self.draft.commit(growth, cand, verdict.tokens, verdict.num_accepted, draft_moves)
        self.target.model.cache.apply(target_moves)
        self.draft.model.cache.apply(draft_moves)
        for seq, verdict in zip(seqs, verdicts):
            out.append((seq.request_id, self._emit(seq, verdict.tokens)))
            seq.num_steps += 1
        tracing = self.on_trace is not None
        if tracing:  # before _retire, which reports finished requests
            shares = [RequestShare(seq.request_id, context, len(tree), tree.depth, verdict.num_accepted,
                                   len(emitted), tuple(tree.parents.tolist()), tuple(tree.probs.tolist()),
                                   tuple(verdict.accepted_nodes))
                      for seq, tree, verdict, context, (_, emitted) in zip(seqs, trees, verdicts, cached, out)]
        self._retire()
        t3 = time.perf_counter()
        if tracing:
            self.on_trace(StepRecord(
                self.step_index, t0, t3, len(seqs), sum(len(t) + 1 for t in trees), sum(cached),
                spec.num_rounds, tuple(spec.round_widths), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                tuple(shares), self.labels))
        self.step_index += 1
        return out

    def run(self) -> dict[int, list[int]]:
        """Step until every request has finished; returns generated tokens by request id."""
        while self.has_work:
            self.step()
        return {rid: s.generated for rid, s in sorted(self.finished.items())}


def build_engine(target, draft, config: EngineConfig, policy_options: dict | None = None,
                 on_trace: Callable[[Record], None] | None = None) -> SpecEngine:
    """Lean models over two loaded transformers models, caches sized for the config, the tree
    policy (``dynamic-cost`` gets a cost model measured here, on the device that will run),
    and the engine."""
    total = config.budget * (config.max_batch if config.batch_budget != "uniform" else 1)
    headroom = max(256, total) + 2
    lean_t = from_hf(target, config.max_batch, headroom)
    lean_d = from_hf(draft, config.max_batch, headroom)
    options = dict(policy_options or {})
    if config.method == "dynamic-cost" and "cost_model" not in options:
        options["cost_model"] = measure_cost_model(lean_t, lean_d)
    policy = registry.create("tree", config.method, **options)
    return SpecEngine(lean_t, lean_d, config, policy, on_trace=on_trace)
