"""One replica's ranks: spawned here, or joined under ``torchrun``, and the groups they talk on.

Rank 0 drives: it runs the engine, the scheduler and the server; ranks 1..tp-1 hold target
(and same-placement draft) shards and follow rank 0's commands; a separate draft has rank
``tp``. ``specgrove generate|bench|serve`` spawn the other ranks of one machine themselves;
under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) every rank runs the same command line and the
ranks other than 0 turn into workers, so several nodes meet through torchrun's rendezvous.

Groups, all from torch.distributed (no socket code of ours):

* ``control`` (gloo, all ranks, a long timeout) and ``commands`` (the same, target ranks):
  where idle ranks wait for rank 0's setup, commands and messages; a server may sit idle for
  hours, and a peer that dies closes its connections, which fails the wait at once.
* ``data`` (gloo, all ranks, ``step_timeout_s``): in-step messages (draft trees, verdicts).
* ``tp`` (NCCL when each target rank has a GPU of its own, else gloo; ranks 0..tp-1,
  ``step_timeout_s``): the all-reduces inside the sharded forward.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from specgrove.executor.parallel.placement import PairSource, Placement  # noqa: F401

log = logging.getLogger("specgrove.parallel")

CONTROL_TIMEOUT = datetime.timedelta(days=30)


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def torchrun_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def torchrun_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_device(base: str, rank: int) -> torch.device:
    """CPU for every rank, or on CUDA the rank's own GPU when there are enough of them (ranks
    beyond the GPU count share, round robin)."""
    if not base.startswith("cuda"):
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", rank))
    return torch.device("cuda", local % max(torch.cuda.device_count(), 1))


@dataclass
class Ranks:
    """This process's place in its replica and the groups above."""

    rank: int
    world: int
    placement: Placement
    device: torch.device
    control: object
    commands: object
    data: object
    tp: object | None
    tp_backend: str

    @property
    def is_target(self) -> bool:
        return self.rank < self.placement.tp

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum ``x`` over the target's ranks in place (the model's ``reduce``)."""
        if self.tp_backend == "gloo" and x.is_cuda:  # ranks sharing one GPU: stage on the host
            y = x.cpu()
            dist.all_reduce(y, group=self.tp)
            x.copy_(y)
        else:
            dist.all_reduce(x, group=self.tp)
        return x

    def broadcast(self, obj=None):
        """Rank 0's object, on every rank of the replica (the setup, pickled by torch)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def command(self, obj=None):
        """Rank 0's command, on every target rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.commands)
        return box[0]


def init_ranks(rank: int, world: int, placement: Placement, base_device: str, step_timeout_s: float,
               init_method: str | None = None) -> Ranks:
    device = rank_device(base_device, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    own_gpus = device.type == "cuda" and torch.cuda.device_count() >= placement.tp
    timeout = datetime.timedelta(seconds=step_timeout_s)
    dist.init_process_group("gloo", init_method=init_method or "env://", rank=rank, world_size=world,
                            timeout=CONTROL_TIMEOUT)
    control = dist.group.WORLD
    target_ranks = list(range(placement.tp))
    commands = dist.new_group(target_ranks, backend="gloo", timeout=CONTROL_TIMEOUT)
    data = dist.new_group(list(range(world)), backend="gloo", timeout=timeout)
    tp_backend = "nccl" if own_gpus else "gloo"
    # Every rank creates every group, in the same order, member or not.
    tp = dist.new_group(target_ranks, backend=tp_backend, timeout=timeout)
    member = rank < placement.tp
    return Ranks(rank, world, placement, device, control, commands if member else None, data,
                 tp if member else None, tp_backend)


def spawn_workers(placement: Placement, base_device: str, threads: int, step_timeout_s: float) -> tuple[list, str]:
    """Start ranks 1..world-1 of a replica on this machine; returns them and the init method
    rank 0 joins with."""
    port = _free_port()
    init_method = f"tcp://127.0.0.1:{port}"
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for rank in range(1, placement.world_size):
        p = ctx.Process(target=worker_main, name=f"specgrove-rank{rank}", daemon=True,
                        args=(rank, placement.world_size, placement, base_device, threads, step_timeout_s, init_method))
        p.start()
        procs.append(p)
    return procs, init_method


def worker_main(rank: int, world: int, placement: Placement, base_device: str, threads: int,
                step_timeout_s: float, init_method: str | None = None) -> None:
    """A rank other than 0: join, take the setup rank 0 broadcasts, serve until told to stop
    (or until rank 0 goes away, which fails the wait and ends the process)."""
    torch.set_num_threads(threads)
    from specgrove.executor.parallel.replica import run_worker

    ranks = init_ranks(rank, world, placement, base_device, step_timeout_s, init_method)
    try:
        run_worker(ranks)
    except Exception as exc:  # rank 0 or a peer went away: say so in one line and leave
        log.warning("rank %d stops: %s", rank, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - the group may be broken already
            pass
