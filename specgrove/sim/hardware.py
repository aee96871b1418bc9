"""Hardware presets: GPUs, links, and the cluster topology replicas are placed on.

Numbers are vendor peaks (dense bf16, HBM bandwidth, memory size); ``mfu``/``mbu`` in the
cost model turn peaks into achievable rates. ``forward_overhead_s`` is the fixed cost of
launching one forward (kernel launches, Python, sampling) that no roofline sees but that
dominates small models, as the architecture notes measured on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_flops: float  # dense bf16 FLOP/s
    mem_bandwidth: float  # bytes/s
    mem_bytes: float
    forward_overhead_s: float


@dataclass(frozen=True)
class Link:
    """An alpha-beta link: a message of n bytes takes ``latency_s + n / bandwidth``."""

    name: str
    bandwidth: float  # bytes/s, one direction
    latency_s: float

    def transfer_s(self, num_bytes: float) -> float:
        return self.latency_s + num_bytes / self.bandwidth


GPUS: dict[str, Gpu] = {
    g.name: g
    for g in (
        Gpu("A100-80G", 312e12, 2.039e12, 80 * GIB, 300e-6),
        Gpu("H100-SXM", 989e12, 3.35e12, 80 * GIB, 250e-6),
        Gpu("H200", 989e12, 4.8e12, 141 * GIB, 250e-6),
        Gpu("L40S", 362e12, 0.864e12, 48 * GIB, 300e-6),
        Gpu("A10", 125e12, 0.6e12, 24 * GIB, 350e-6),
        # This machine: 2 cores, AVX2 fp32 (~100 GFLOP/s peak), ~20 GB/s DRAM. The overhead
        # is the 0.42 ms measured for one lean-forward decode step of a 0.9M Llama.
        Gpu("cpu-2core", 100e9, 20e9, 8 * GIB, 420e-6),
    )
}

LINKS: dict[str, Link] = {
    l.name: l
    for l in (
        Link("nvlink", 450 * GB, 2e-6),  # NVLink 4: 900 GB/s bidirectional per GPU
        Link("pcie4", 25 * GB, 5e-6),
        Link("pcie5", 50 * GB, 5e-6),
        Link("infiniband", 50 * GB, 5e-6),  # 400 Gb/s NDR per GPU
        Link("ethernet", 12.5 * GB, 20e-6),  # 100 GbE
        Link("shared-memory", 10 * GB, 1e-6),  # two processes on one CPU host
    )
}


def allreduce_s(num_bytes: float, num_ranks: int, link: Link) -> float:
    """Ring all-reduce, alpha-beta: 2(n-1) steps, each moving 1/n of the message."""
    if num_ranks <= 1:
        return 0.0
    steps = 2 * (num_ranks - 1)
    return steps * link.latency_s + steps / num_ranks * num_bytes / link.bandwidth


@dataclass(frozen=True)
class Placement:
    """Where one replica lives: its target GPUs, its draft GPUs (empty: shares the target's)
    and the link that carries draft tokens when the draft is separate."""

    replica_id: int
    target_gpus: tuple[int, ...]
    draft_gpus: tuple[int, ...]
    draft_link: Link | None


@dataclass(frozen=True)
class Topology:
    """``num_nodes`` nodes of ``gpus_per_node`` GPUs; NVLink-class inside, a fabric between."""

    gpu: Gpu
    num_nodes: int
    gpus_per_node: int
    intra_link: Link
    inter_link: Link

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def node_of(self, gpu_id: int) -> int:
        return gpu_id // self.gpus_per_node

    def place(self, num_replicas: int, tp: int, draft_gpus: int) -> list[Placement]:
        """Target groups first, node-aligned blocks of ``tp`` so all-reduce stays on NVLink;
        separate draft GPUs (if any) take the GPUs left over, in order."""
        target_total = num_replicas * tp
        out = []
        for r in range(num_replicas):
            target = tuple(range(r * tp, (r + 1) * tp))
            start = target_total + r * draft_gpus
            draft = tuple(range(start, start + draft_gpus))
            link = None
            if draft:
                same_node = self.node_of(draft[0]) == self.node_of(target[0])
                link = self.intra_link if same_node else self.inter_link
            out.append(Placement(r, target, draft, link))
        return out
