"""A replica over several ranks: rank 0 builds the engine, the other ranks serve it.

``start_replica`` (rank 0) spawns or joins the ranks, broadcasts the ``ReplicaSetup``, shards
the models and returns a ``Replica`` whose ``engine`` has the single-process engine's
interface. Sharded models are wrapped in ``DrivenModel``: every forward and cache operation is
broadcast to the target ranks before rank 0 runs its own shard, so the packed batch is built
once per step, on rank 0, and every accept decision is rank 0's. ``run_worker`` is the other
ranks' side: target shards replay the commands; a separate draft runs ``DraftServer``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace

import torch
import torch.distributed as dist

from specgrove import registry
from specgrove.cost import OnlineCostModel
from specgrove.executor.draft_side import LocalDraft
from specgrove.executor.engine import Counter, EngineConfig, SpecEngine, cache_headroom
from specgrove.executor.measure import measure_cost_model
from specgrove.executor.parallel import launch, tensor_parallel
from specgrove.executor.parallel.placement import PairSource, Placement, PlacementError
from specgrove.executor.parallel.remote_draft import DraftLane, DraftLink, DraftServer, RemoteDraft
from specgrove.executor.runtime import LeanModel, from_hf
from specgrove.executor.runtime.graphs import GraphsUnavailable

log = logging.getLogger("specgrove.parallel")


@dataclass(frozen=True)
class ReplicaSetup:
    source: PairSource
    placement: Placement
    config: EngineConfig
    policy_options: dict = field(default_factory=dict)

    @property
    def lanes(self) -> int:
        return self.placement.microbatches if self.placement.is_separate else 1

    @property
    def lane_batch(self) -> int:
        return -(-self.config.max_batch // self.lanes)


def _host(value):
    return value.cpu() if isinstance(value, torch.Tensor) else (
        tuple(_host(v) for v in value) if isinstance(value, tuple) else value)


def _to(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else (
        tuple(_to(v, device) for v in value) if isinstance(value, tuple) else value)


class DrivenCache:
    def __init__(self, cache, key: str, ranks) -> None:
        self._cache, self._key, self._ranks = cache, key, ranks

    def __getattr__(self, name):
        return getattr(self._cache, name)

    def apply(self, moves) -> None:
        if moves:
            self._ranks.command(("apply", self._key, list(moves)))
            self._cache.apply(moves)

    def copy_row(self, src: int, dst: int, length: int) -> None:
        self._ranks.command(("copy_row", self._key, (src, dst, length)))
        self._cache.copy_row(src, dst, length)


class DrivenModel:
    """Rank 0's handle on a model sharded over the target ranks."""

    def __init__(self, model: LeanModel, key: str, ranks) -> None:
        self._model, self._key, self._ranks = model, key, ranks
        self.cache = DrivenCache(model.cache, key, ranks)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def forward(self, **kwargs) -> torch.Tensor:
        self._ranks.command(("forward", self._key, {k: _host(v) for k, v in kwargs.items()}))
        return self._model.forward(**kwargs)

    def forward_batch(self, batch, select) -> torch.Tensor:
        return self.forward(**batch.build(self._model.device, select=select))  # every rank runs it

    def forward_tree(self, *args) -> torch.Tensor:
        self._ranks.command(("forward_tree", self._key, _host(tuple(args))))
        return self._model.forward_tree(*args)


def _views(model: LeanModel, prefix: str, lanes: int, rows: int, max_len: int) -> dict[str, LeanModel]:
    """One cache per micro-batch over shared weights."""
    out = {}
    for lane in range(lanes):
        view = model if lane == 0 else copy.copy(model)
        view.allocate(rows, max_len)
        out[f"{prefix}/{lane}"] = view
    return out


def _target_shards(setup: ReplicaSetup, ranks, pair) -> dict[str, LeanModel]:
    """This target rank's shards: the target per micro-batch, and a same-placement draft."""
    headroom = cache_headroom(setup.config)
    world, rank = setup.placement.tp, ranks.rank
    target = tensor_parallel.shard(from_hf(pair.target, 1, headroom, setup.config.kernels, setup.config.gemm), rank, world, ranks.all_reduce)
    models = _views(target, "target", setup.lanes, setup.lane_batch, target.cache.max_len)
    if not setup.placement.is_separate:
        draft = tensor_parallel.shard(from_hf(pair.draft, 1, headroom, setup.config.kernels, setup.config.gemm), rank, world, ranks.all_reduce)
        models.update(_views(draft, "draft", 1, setup.config.max_batch, draft.cache.max_len))
    return models


def run_worker(ranks) -> None:
    setup: ReplicaSetup = ranks.broadcast()
    torch.manual_seed(setup.config.seed)
    pair = setup.source.load(device=str(ranks.device))
    if ranks.is_target:
        models = _target_shards(setup, ranks, pair)
        dist.barrier(group=ranks.control)  # ready: rank 0 starts timing and serving after this
        while True:
            op, key, args = ranks.command()
            if op == "stop":
                return
            model = models[key]
            if op == "forward":
                model.forward(**{k: _to(v, ranks.device) for k, v in args.items()})
            elif op == "forward_tree":
                model.forward_tree(*_to(args, ranks.device))
            elif op == "apply":
                model.cache.apply(args)
            elif op == "copy_row":
                model.cache.copy_row(*args)
    else:
        draft = from_hf(pair.draft, 1, cache_headroom(setup.config), setup.config.kernels, setup.config.gemm)
        policy = registry.create("tree", setup.config.method, **setup.policy_options)
        split = registry.get("batch-budget", setup.config.batch_budget)
        views = _views(draft, "draft", setup.lanes, setup.lane_batch, draft.cache.max_len)
        lanes = [DraftLane(LocalDraft(m, policy, split, setup.config.budget)) for m in views.values()]
        dist.barrier(group=ranks.control)
        DraftServer(ranks, lanes).run()


class Replica:
    """Rank 0's replica: the engine and the ranks behind it; ``close`` stops them."""

    def __init__(self, engine, ranks, procs: list, link: DraftLink | None) -> None:
        self.engine, self.ranks, self.procs, self.link = engine, ranks, procs, link

    @property
    def traffic(self) -> dict | None:
        return None if self.link is None else self.link.traffic.as_dict()

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            if self.ranks.placement.tp > 1:
                self.ranks.command(("stop", None, None))
            if self.link is not None:
                self.link.stop()
        except Exception as exc:  # noqa: BLE001 - a peer is gone already; still reap the rest
            log.warning("stopping the replica's ranks: %s", str(exc).splitlines()[0])
        _reap(self.procs, timeout_s)
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def start_replica(pair, source: PairSource, placement: Placement, config: EngineConfig,
                  policy_options: dict, on_trace=None, threads: int = 1, step_timeout_s: float = 60.0) -> Replica:
    """Rank 0 of a replica on ``placement``: ``pair`` is rank 0's loaded pair (tokenizer and
    measurements); every other rank loads ``source`` itself."""
    tensor_parallel.check_divisible(pair.target.config, placement.tp, "target")
    if not placement.is_separate:
        tensor_parallel.check_divisible(pair.draft.config, placement.tp, "draft")
    options = dict(policy_options)
    headroom = cache_headroom(config)
    if config.method == "dynamic-cost" and "cost_model" not in options:
        # Measured on whole models in this process, before any rank waits on us.
        options["cost_model"] = OnlineCostModel(measure_cost_model(from_hf(pair.target, 1, headroom, config.kernels, config.gemm),
                                                                   from_hf(pair.draft, 1, headroom, config.kernels, config.gemm)))
    procs, init_method = [], None
    if not launch.under_torchrun():
        procs, init_method = launch.spawn_workers(placement, source.device, threads, step_timeout_s)
    elif launch.torchrun_world() != placement.world_size:
        raise PlacementError(f"torchrun started {launch.torchrun_world()} ranks; "
                             f"the placement ({placement.describe()}) needs {placement.world_size}")
    try:
        ranks = launch.init_ranks(0, placement.world_size, placement, source.device, step_timeout_s, init_method)
    except Exception:
        _reap(procs, 5.0)
        raise
    try:
        return _drive(pair, ranks, procs, ReplicaSetup(source, placement, config, options), on_trace)
    except Exception:
        Replica(None, ranks, procs, None).close(timeout_s=5.0)
        raise


def _reap(procs: list, timeout_s: float) -> None:
    for p in procs:
        p.join(timeout_s)
        if p.is_alive():
            p.terminate()
            p.join(timeout_s)


def _drive(pair, ranks, procs: list, setup: ReplicaSetup, on_trace) -> Replica:
    """Rank 0 after the group formed: hand out the setup, build the engine on the ranks."""
    from specgrove.executor.parallel.pipeline import PipelinedEngine

    placement, config, options = setup.placement, setup.config, setup.policy_options
    ranks.broadcast(setup)
    models = _target_shards(setup, ranks, pair)
    if placement.tp > 1:
        models = {k: DrivenModel(m, k, ranks) for k, m in models.items()}
    policy = registry.create("tree", config.method, **options)
    dist.barrier(group=ranks.control)  # every rank has loaded and sharded its models
    if not placement.is_separate:
        engine = SpecEngine(models["target/0"], models["draft/0"], config, policy, on_trace=on_trace)
        return Replica(engine, ranks, procs, None)
    link = DraftLink(ranks, placement.draft_rank)
    max_positions = _draft_max_positions(pair.draft)
    ids, steps = Counter(), Counter()
    lane_config = replace(config, max_batch=setup.lane_batch)
    lanes = [SpecEngine(models[f"target/{i}"], None, lane_config, policy, on_trace=on_trace,
                        drafter=RemoteDraft(link, i, max_positions, pair.draft.config.vocab_size,
                                            policy.observes_steps), ids=ids, steps=steps)
             for i in range(setup.lanes)]
    engine = lanes[0] if len(lanes) == 1 else PipelinedEngine(lanes, config)
    return Replica(engine, ranks, procs, link)


def _draft_max_positions(hf_model) -> int:
    """The draft's usable context, as its lean family computes it (no cache needed)."""
    return from_hf(hf_model, 1, 0).max_positions


class LocalReplica:
    """A replica in this one process: the same interface, nothing to stop."""

    traffic = None

    def __init__(self, engine) -> None:
        self.engine = engine

    def close(self, timeout_s: float = 10.0) -> None:
        pass


def open_replica(pair, source: PairSource, placement: Placement, config: EngineConfig,
                 policy_options: dict, on_trace=None, threads: int = 1, step_timeout_s: float = 60.0):
    """The engine on ``placement``: in this process when it has one rank, else ``start_replica``."""
    if placement.is_distributed and config.cuda_graphs == "on":
        raise GraphsUnavailable(f"CUDA graphs are captured in one-process placements only, not {placement.describe()}")
    if not placement.is_distributed:
        from specgrove.executor.engine import build_engine

        return LocalReplica(build_engine(pair.target, pair.draft, config, policy_options, on_trace=on_trace))
    return start_replica(pair, source, placement, config, policy_options, on_trace, threads, step_timeout_s)
