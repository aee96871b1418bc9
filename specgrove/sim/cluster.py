"""The SimPy model of a serving cluster: arrivals, a router, and replicas stepping batches.

An arrival process pulls requests from the workload, one timeout per arrival; the router
(a registered policy) picks a replica from the replicas' load reports; each replica runs its
own step loop (see ``replica``). All randomness comes from children of one seeded Generator,
one per concern, so adding a draw in one place does not reshuffle another.
"""

from __future__ import annotations

import numpy as np
import simpy

from specgrove import registry
from specgrove.sim.acceptance import ExactAcceptance, TabulatedAcceptance
from specgrove.sim.build import Built, make_router, make_scheduler, make_tree_policy
from specgrove.sim.planner import Planner
from specgrove.sim.records import Ledger, RequestRecord
from specgrove.sim.replica import Replica, ReplicaSetup
from specgrove.sim.scenario import Scenario
from specgrove.sim.workload import mean_length, scenario_arrivals
from specgrove.types import Request


def rng_streams(seed: int) -> list[np.random.Generator]:
    """The run's independent streams: arrivals, acceptance, router, acceptance tables."""
    return np.random.default_rng(seed).spawn(4)


class SimCluster:
    def __init__(self, scenario: Scenario, built: Built, seed: int, on_trace=None) -> None:
        s = scenario
        self.scenario, self.built = s, built
        self.env = simpy.Environment()
        arrival_rng, accept_rng, router_rng, table_rng = rng_streams(seed)
        self.arrival_rng = arrival_rng

        policy = make_tree_policy(s, built)
        budget_fn = registry.get("batch-budget", s.policies.batch_budget)
        exact = ExactAcceptance(policy, budget_fn, built.drafts, s.policies.tree_budget, s.policies.batch_node_budget,
                                built.lookup)
        if s.acceptance.mode == "tabulated":
            typical_ctx = int(mean_length(s.workload.prompt) + mean_length(s.workload.output) / 2)
            acceptance = TabulatedAcceptance(exact, table_rng, typical_ctx, s.acceptance.num_samples,
                                             built.measured_rows, built.measured_by_generated)
            expected_tau = acceptance.mean_emitted()
        else:
            acceptance, expected_tau = exact, 1.0
        planner = Planner(acceptance, built.cost, accept_rng, policy.uses_draft(s.policies.tree_budget))
        self.router = make_router(s, router_rng)
        setup = ReplicaSetup(
            max_batch=s.deployment.max_batch, kv_capacity_tokens=built.kv_capacity_tokens,
            tree_budget=s.policies.tree_budget, domain_index={d: i for i, d in enumerate(built.domains)},
            expected_tau=expected_tau,
            expected_step_s=built.cost.target_forward_s(1, s.policies.tree_budget + 1, 0),
            microbatches=s.deployment.microbatches if s.deployment.draft_placement == "separate" else 1,
            separate_prefill=s.deployment.prefill == "separate",
        )
        self.ledger = Ledger()
        self.arrivals_done = False
        self.clamped = {"prompt": 0, "output": 0}  # lengths drawn above their LengthSpec's max
        self.replicas = [Replica(self.env, p, make_scheduler(s), planner, setup, self.ledger, on_trace)
                         for p in built.placements]
        self.env.process(self._arrivals())

    def _arrivals(self):
        s, env = self.scenario, self.env
        context = self.built.context_tokens
        for rid, a in enumerate(scenario_arrivals(s.workload, s.duration_s, self.arrival_rng, self.built.trace)):
            yield env.timeout(a.arrival_s - env.now)
            self.clamped["prompt"] += a.prompt_clamped
            self.clamped["output"] += a.output_clamped
            if a.prompt_tokens + a.output_tokens > context:  # no replica can run it: refused at the door
                self.ledger.arrive(RequestRecord(rid, -1, a.domain, a.arrival_s, a.prompt_tokens, a.output_tokens))
                self.ledger.reject(rid, "context_length", f"prompt + output {a.prompt_tokens + a.output_tokens} "
                                   f"tokens > context {context} of {s.models.target}/{s.models.draft}")
                continue
            deadline = a.arrival_s + (s.slo.e2e_s if s.slo.e2e_s is not None else s.slo.ttft_s)
            req = Request(rid, a.prompt_tokens, a.output_tokens, a.arrival_s, a.domain, deadline)
            chosen = self.router.route(req, [r.load() for r in self.replicas])
            self.ledger.arrive(RequestRecord(rid, chosen, req.domain, a.arrival_s, a.prompt_tokens, a.output_tokens,
                                             frontend_s=self.built.frontend_s))
            self.replicas[chosen].submit(req)
        self.arrivals_done = True

    @property
    def is_drained(self) -> bool:
        """No arrival left and every replica parked on its wake event: nothing can happen."""
        return self.arrivals_done and all(r.is_parked for r in self.replicas)

    def utilisation(self, elapsed_s: float) -> dict:
        """Busy fraction of each replica resource over ``elapsed_s``, averaged over replicas.
        ``overlap``: the fraction of time a replica's draft GPU and target GPUs were busy at
        once (a separate draft in ping-pong); ``draft_overlap``: the share of draft-GPU busy
        time that overlapped the target's (0 when the draft GPU never worked)."""
        out = {}
        for key in ("gpu", "draft_gpu", "tp_link", "draft_link", "overlap"):
            values = [r.busy_s[key] / elapsed_s for r in self.replicas] if elapsed_s > 0 else [0.0]
            out[key] = float(np.mean(values))
        draft_s = sum(r.busy_s["draft_gpu"] for r in self.replicas)
        out["draft_overlap"] = sum(r.busy_s["overlap"] for r in self.replicas) / draft_s if draft_s > 0 else 0.0
        return out
