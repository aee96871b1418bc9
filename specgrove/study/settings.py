"""How big a study is: ``QUICK`` (under 3 minutes on a 2-core CPU) and ``FULL``.

Real runs measure the embedded demo pair on this machine across batch sizes, prompt domains
and temperatures; simulated runs put the 7B and 70B pairs on H100s across load, tensor
parallelism, draft placement and the batch-budget policy.
"""

from __future__ import annotations

from dataclasses import dataclass

DYNAMIC = ("dynamic", "dynamic-cost")
STATIC = ("static", "sequoia", "chain")  # static trees: SpecInfer's widths, Sequoia's DP, a chain
METHODS = ("ar", "chain", "static", "sequoia", "dynamic", "dynamic-cost")


@dataclass(frozen=True)
class SimPair:
    """A simulated deployment: the pair, its TP degree, the loads to sweep (req/s), the load
    the deployment experiments run at, and the TP degrees to compare."""

    key: str
    pair: str
    tp: int
    rates: tuple[float, ...]
    mid_rate: float
    tps: tuple[int, ...]


@dataclass(frozen=True)
class Settings:
    name: str
    # Real runs (the executor, in this process).
    prompts_per_domain: int  # the first N prompts of each domain's file, cycled when it has fewer
    max_new_tokens: int
    batch_sizes: tuple[int, ...]
    repeats: int
    domains: tuple[str, ...] = ("code", "prose")
    temperatures: tuple[float, ...] = (0.0, 1.0)
    methods: tuple[str, ...] = METHODS
    budget: int = 16  # tree nodes per request per step
    # Simulated clusters.
    sim_pairs: tuple[SimPair, ...] = ()
    sim_duration_s: float = 20.0  # arrivals stop here; the run ends when every request is done
    sim_samples: int = 256  # tabulated acceptance: exact samples per (domain, budget)
    deploy_policies: tuple[str, ...] = ("ar", "static", "dynamic", "dynamic-cost")
    # The batch-budget experiment: exact acceptance (tabulated steps split a node cap uniformly
    # whatever the policy), so it is slower; it runs for these pairs only, over a shorter horizon.
    batch_node_budget: int = 64  # nodes per step over the batch: binds from 4 requests on
    budget_pairs: tuple[str, ...] = ("70b",)
    budget_duration_s: float = 10.0
    processes: int = 1  # simulator processes (after the real runs: they never overlap torch)


PAIRS_QUICK = (
    SimPair("7b", "llama-2-7b/68m", 1, (2.0, 8.0, 24.0), 8.0, (1, 2)),
    SimPair("70b", "llama-2-70b/7b", 4, (1.0, 3.0, 6.0), 3.0, (2, 4, 8)),
)
PAIRS_FULL = (
    SimPair("7b", "llama-2-7b/68m", 1, (2.0, 4.0, 8.0, 16.0, 24.0, 32.0), 8.0, (1, 2, 4)),
    SimPair("70b", "llama-2-70b/7b", 4, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0), 3.0, (2, 4, 8)),
)

QUICK = Settings("quick", prompts_per_domain=4, max_new_tokens=32, batch_sizes=(1, 4), repeats=1,
                 sim_pairs=PAIRS_QUICK, sim_duration_s=20.0, sim_samples=256)
FULL = Settings("full", prompts_per_domain=24, max_new_tokens=64, batch_sizes=(1, 4, 16), repeats=3,
                sim_pairs=PAIRS_FULL, sim_duration_s=120.0, sim_samples=1024, deploy_policies=METHODS,
                budget_pairs=("7b", "70b"), budget_duration_s=30.0, processes=2)
