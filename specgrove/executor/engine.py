"""The decoding loop: admit, speculate, verify the trees in one forward, accept, compact, stream.

    step():  admit new requests in the scheduler policy's order (prefill)
             speculation = speculate(tree policy, batch-budget policy, draft rounds)
                           -- the step the simulator runs too: grow, split, select
             verdicts    = target.accept(target.verify(trees))   one target forward
             compact both KV caches, emit tokens, retire finished requests
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from specgrove import registry
from specgrove.cost import OnlineCostModel, StepTiming
from specgrove.executor.draft_side import LocalDraft
from specgrove.executor.measure import measure_cost_model
from specgrove.executor.request_state import RequestState
from specgrove.executor.runtime import LeanModel, from_hf, graphs
from specgrove.executor.sampling import SamplingParams
from specgrove.executor.target_worker import TargetWorker
from specgrove.policies.base import TreePolicy
from specgrove.policies.speculation import Speculation
from specgrove.trace import Labels, PrefillRecord, Record, RequestShare, RequestTimes, StepRecord

log = logging.getLogger("specgrove.executor")


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
    kernels: str = "auto"  # "cupy" on CUDA where CuPy imports, else "torch"; or either by name
    gemm: str = "auto"  # "auto": oneDNN's packed products on CPU where they pay; "torch": F.linear
    cuda_graphs: str = "auto"  # "auto": dense forwards replay CUDA graphs on CUDA (``runtime.graphs``)


class Counter:
    """Numbers handed out in turn (request ids, step indices)."""

    def __init__(self) -> None:
        self.value = 0

    def take(self) -> int:
        self.value += 1
        return self.value - 1


def cancel_waiting(waiting: list[RequestState], finished: dict[int, RequestState], request_id: int) -> bool:
    """Move a request that is still waiting to ``finished``, cancelled; False if not waiting."""
    for i, seq in enumerate(waiting):
        if seq.request_id == request_id:
            del waiting[i]
            seq.is_finished = seq.is_cancelled = True
            seq.finish_s = time.perf_counter()
            finished[request_id] = seq
            return True
    return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpecEngine:
    def __init__(self, target: LeanModel, draft: LeanModel | None, config: EngineConfig,
                 policy: TreePolicy, on_trace: Callable[[Record], None] | None = None,
                 drafter=None, ids: Counter | None = None, steps: Counter | None = None) -> None:
        """``draft``: a lean model in this process, or None with ``drafter``, a draft side
        elsewhere (see ``draft_side``). ``ids`` and ``steps`` number requests and steps; engines
        that share them (micro-batches of one replica) number as one."""
        self.config, self.policy = config, policy
        self.split = registry.get("batch-budget", config.batch_budget)
        self.scheduler = registry.create("scheduler", config.scheduler)
        self.target = TargetWorker(target)
        self.drafter = drafter if drafter is not None else LocalDraft(draft, policy, self.split, config.budget)
        # A policy that never drafts, or no budget: the draft side does no work (traced as 0 ms).
        self.draft_idle = not policy.uses_draft(config.budget)
        if target.vocab_size != self.drafter.vocab_size:
            raise ValueError(f"target vocabulary ({target.vocab_size}) != draft vocabulary ({self.drafter.vocab_size})")
        # Positions must stay inside both models' context; cache slots have extra headroom for
        # the tree nodes of a step (slots are not positions, see runtime.kv).
        self.max_positions = min(target.max_positions, self.drafter.max_positions)
        self.waiting: list[RequestState] = []
        self.active: list[RequestState] = []
        self.finished: dict[int, RequestState] = {}
        self.on_trace = on_trace  # gets every step, prefill and finished request (specgrove.trace)
        self.labels = Labels(config.method, config.max_batch)
        self._ids = ids if ids is not None else Counter()
        self._steps = steps if steps is not None else Counter()

    # ---- requests -----------------------------------------------------------------------
    def add_request(self, prompt: list[int], max_new_tokens: int, sampling: SamplingParams | None = None,
                    seed: int | None = None, deadline_s: float | None = None, ignore_eos: bool = False,
                    arrival_s: float | None = None) -> int:
        """Queue a request (see ``new_request``); returns its id."""
        seq = self.new_request(prompt, max_new_tokens, sampling, seed, deadline_s, ignore_eos, arrival_s)
        self.waiting.append(seq)
        return seq.request_id

    def new_request(self, prompt: list[int], max_new_tokens: int, sampling: SamplingParams | None = None,
                    seed: int | None = None, deadline_s: float | None = None,
                    ignore_eos: bool = False, arrival_s: float | None = None) -> RequestState:
        """A checked request state, not yet queued; ``sampling`` defaults to the config's, ``seed`` (sampling) to one
        derived from the config's seed and the request id; ``deadline_s`` is absolute
        (``time.perf_counter()`` seconds), for deadline-aware schedulers; ``ignore_eos``
        generates ``max_new_tokens`` whatever comes; ``arrival_s``: when the request reached
        the server (``time.perf_counter()``; default now), so that its queueing counts the
        wait before the engine took it in."""
        if not prompt:
            raise ValueError("the prompt is empty")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if len(prompt) + max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                f"model context ({self.max_positions} tokens)"
            )
        rid = self._ids.take()
        sampling = sampling or self.config.sampling
        gen = None
        if not sampling.is_greedy:
            # One generator per request: its tokens do not depend on who shares the batch.
            gen = torch.Generator(device=self.target.model.device)
            gen.manual_seed(self.config.seed * 1_000_003 + rid if seed is None else seed)
        return RequestState(rid, list(prompt), max_new_tokens, sampling, gen, deadline_s, ignore_eos,
                            arrival_s=time.perf_counter() if arrival_s is None else arrival_s)

    def cancel(self, request_id: int) -> bool:
        """Stop a request between steps (its cache row is freed at the next step); returns
        whether it was still waiting or running."""
        if cancel_waiting(self.waiting, self.finished, request_id):
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
        for seq, tok in zip(new, first_tokens):
            seq.draft_pending = [tok]  # the root, still to feed the draft
        self.drafter.prefill(new)
        _sync(self.target.model.device)
        out = []
        t2 = time.perf_counter()
        if self.on_trace is not None:
            self.on_trace(PrefillRecord(self._steps.value, now, t2, len(new), sum(len(s.prompt) for s in new),
                                        (t1 - now) * 1e3, 0.0 if self.draft_idle else (t2 - t1) * 1e3, self.labels))
        now = t2
        for seq, tok in zip(new, first_tokens):
            seq.first_token_s = now
            out.append((seq.request_id, self._emit(seq, [tok])))
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
        if len(keep) == len(self.active):
            return
        now = time.perf_counter()
        self.drafter.retire([s.request_id for s in self.active if s.is_finished])
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
                self.drafter.move_row(s, new_row)
                s.row = new_row
        self.active = keep

    # ---- one step ---------------------------------------------------------------------------
    def speculate(self, seqs: list[RequestState]) -> Speculation:
        """This step's trees from the draft side (the shared speculation step)."""
        return self.drafter.propose(seqs)

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
        index = self._steps.take()
        t0 = time.perf_counter()
        spec = self.speculate(seqs)
        trees = spec.trees
        _sync(device)
        t1 = time.perf_counter()
        logits = self.target.verify(seqs, trees)
        verdicts = self.target.accept(seqs, trees, logits)
        _sync(device)
        t2 = time.perf_counter()
        target_moves = []
        for seq, verdict in zip(seqs, verdicts):
            self.target.commit(seq, verdict, target_moves)
        self.target.model.cache.apply(target_moves)
        self.drafter.commit(seqs, spec, [(v.tokens, v.num_accepted) for v in verdicts])
        for seq, verdict in zip(seqs, verdicts):
            out.append((seq.request_id, self._emit(seq, verdict.tokens)))
            seq.num_steps += 1
        tracing = self.on_trace is not None
        if tracing:  # before _retire, which reports finished requests
            orders = spec.lookup_orders or (-1,) * len(seqs)
            shares = [RequestShare(seq.request_id, context, len(tree), tree.depth, verdict.num_accepted,
                                   len(emitted), tuple(tree.parents.tolist()), tuple(tree.probs.tolist()),
                                   tuple(verdict.accepted_nodes), order)
                      for seq, tree, verdict, context, (_, emitted), order
                      in zip(seqs, trees, verdicts, cached, out, orders)]
        self._retire()
        t3 = time.perf_counter()
        # To the policy that proposed the step: in this process, or on the draft's own rank.
        self.drafter.observe_step(StepTiming(len(seqs), sum(len(t) + 1 for t in trees), sum(cached),
                                             tuple(spec.round_widths), t1 - t0, t2 - t1, t3 - t2,
                                             sum(len(v.tokens) for v in verdicts), spec.catch_up_tokens,
                                             tuple(tuple(v.tokens) for v in verdicts)))
        if tracing:
            self.on_trace(StepRecord(
                index, t0, t3, len(seqs), sum(len(t) + 1 for t in trees), sum(cached),
                spec.num_rounds, tuple(spec.round_widths), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3,
                tuple(shares), self.labels))
        return out

    def graph_stats(self) -> dict | None:
        """Both models' CUDA graphs (``runtime.graphs``), summed: captured, capture seconds,
        replays and dense forwards that ran eagerly; None without graphs."""
        models = [self.target.model] + ([self.drafter.worker.model] if isinstance(self.drafter, LocalDraft) else [])
        found = [m.graphs.stats.as_dict() for m in models if m.graphs is not None]
        return {k: round(sum(f[k] for f in found), 3) for k in found[0]} if found else None

    def run(self) -> dict[int, list[int]]:
        """Step until every request has finished; returns generated tokens by request id."""
        while self.has_work:
            self.step()
        return {rid: s.generated for rid, s in sorted(self.finished.items())}


def cache_headroom(config: EngineConfig) -> int:
    """Cache slots past the context: one step's tree nodes (a request's share can reach the
    batch total under a global split) and a padding slot."""
    total = config.budget * (config.max_batch if config.batch_budget != "uniform" else 1)
    return max(256, total) + 2


def capture_graphs(*models, emulate: bool = False) -> None:
    """Capture every dense-forward bucket of each model now, at build time, so that no request
    pays for a capture (``runtime.graphs``); logs what it took (``graph_stats`` reports it)."""
    started = time.perf_counter()
    for m in models:
        m.graphs = graphs.DecodeGraphs(m, emulate=emulate)
        m.graphs.capture_all()
    log.info("captured %d %sCUDA graphs in %.2f s (before any request)", sum(m.graphs.stats.captured for m in models),
             "emulated " if emulate else "", time.perf_counter() - started)


def build_engine(target, draft, config: EngineConfig, policy_options: dict | None = None,
                 on_trace: Callable[[Record], None] | None = None) -> SpecEngine:
    """Lean models over two loaded transformers models, caches sized for the config, the tree
    policy (``dynamic-cost`` gets a cost model measured here, on the device that will run),
    and the engine."""
    headroom = cache_headroom(config)
    from specgrove.executor.memory import check_kv_fits

    check_kv_fits(target, draft, config.max_batch, headroom)  # refuse before allocating what cannot fit
    lean_t = from_hf(target, config.max_batch, headroom, config.kernels, config.gemm)
    lean_d = from_hf(draft, config.max_batch, headroom, config.kernels, config.gemm)
    if graphs.wanted(config.cuda_graphs, lean_t.device):
        capture_graphs(lean_t, lean_d)
    options = dict(policy_options or {})
    if config.method == "dynamic-cost" and "cost_model" not in options:
        # Measured here at start-up, then refitted from the engine's own steps as it runs.
        options["cost_model"] = OnlineCostModel(measure_cost_model(lean_t, lean_d))
    policy = registry.create("tree", config.method, **options)
    return SpecEngine(lean_t, lean_d, config, policy, on_trace=on_trace)
