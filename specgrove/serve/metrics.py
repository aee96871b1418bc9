"""The server's Prometheus metrics (``GET /metrics``), kept in a registry of its own.

Counters and histograms are updated from the engine thread (prometheus_client is
thread-safe); tau and the acceptance rate are ratios of counters, exported as gauges too so a
dashboard need not divide. With replicas (``specgrove.serve.replicas``) the front-end updates
them from the events and step records its replicas send, and counts failures and retries.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from specgrove.trace import Record, StepRecord

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    def __init__(self, model: str, replicas: int = 1) -> None:
        self.registry = r = CollectorRegistry()
        labels = {"model": model}
        self.running = Gauge("specgrove_requests_running", "Requests in the running batch", registry=r)
        self.waiting = Gauge("specgrove_requests_waiting", "Requests queued for admission", registry=r)
        self.finished = Counter("specgrove_requests_finished", "Requests that ran to their end", registry=r)
        self.cancelled = Counter("specgrove_requests_cancelled", "Requests cancelled by their client", registry=r)
        self.rejected = Counter("specgrove_requests_rejected", "Requests refused: the queue was full", registry=r)
        self.prompt_tokens = Counter("specgrove_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generation_tokens = Counter("specgrove_generation_tokens", "Tokens generated", registry=r)
        self.steps = Counter("specgrove_steps", "Engine steps (target verification forwards)", registry=r)
        self.request_steps = Counter("specgrove_request_steps", "Requests verified, summed over steps", registry=r)
        self.tree_nodes = Counter("specgrove_tree_nodes", "Draft tree nodes verified", registry=r)
        self.accepted = Counter("specgrove_accepted_tokens", "Draft tree nodes accepted", registry=r)
        self.tau = Gauge("specgrove_tau", "Tokens emitted per request per step, since start", registry=r)
        self.acceptance = Gauge("specgrove_acceptance_rate", "Accepted / verified draft nodes, since start", registry=r)
        self.ttft = Histogram("specgrove_time_to_first_token_seconds", "Arrival to first token", buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("specgrove_time_per_output_token_seconds", "Mean gap between later tokens", buckets=LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("specgrove_e2e_request_latency_seconds", "Arrival to finish", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("specgrove_queue_time_seconds", "Arrival to admission", buckets=LATENCY_BUCKETS, registry=r)
        self.retries = Counter("specgrove_request_retries", "Requests re-queued after their replica failed", registry=r)
        self.replica_failures = Counter("specgrove_replica_failures", "Replicas that died or whose engine failed", registry=r)
        self.replicas_alive = Gauge("specgrove_replicas_alive", "Replicas serving", registry=r)
        self.replicas_alive.set(replicas)
        self.replica_requests = Counter("specgrove_replica_requests", "Requests routed to each replica (retries too)",
                                        ["replica"], registry=r)
        Gauge("specgrove_model_info", "The model served", list(labels), registry=r).labels(**labels).set(1)
        self._emitted = self._request_steps = self._nodes = self._accepted = 0

    def observe(self, rec: Record) -> None:
        """The engine's trace hook: steps feed the speculation counters."""
        if not isinstance(rec, StepRecord):
            return
        self.steps.inc()
        nodes = sum(r.tree_size for r in rec.requests)
        accepted = sum(r.accepted_len for r in rec.requests)
        self.request_steps.inc(len(rec.requests))
        self.tree_nodes.inc(nodes)
        self.accepted.inc(accepted)
        self._emitted += sum(r.emitted for r in rec.requests)
        self._request_steps += len(rec.requests)
        self._nodes += nodes
        self._accepted += accepted
        self.tau.set(self._emitted / self._request_steps)
        if self._nodes:
            self.acceptance.set(self._accepted / self._nodes)

    def observe_queue(self, running: int, waiting: int) -> None:
        self.running.set(running)
        self.waiting.set(waiting)

    def observe_finish(self, seq) -> None:
        """A request that ran to its end (a ``RequestState`` with its times)."""
        self.observe_times(len(seq.prompt), len(seq.generated), seq.arrival_s, seq.admitted_s, seq.first_token_s,
                           seq.finish_s)

    def observe_times(self, prompt_tokens: int, output_tokens: int, arrival: float, admitted: float | None,
                      first_token: float | None, finish: float) -> None:
        """A request that ran to its end, by its numbers (times on one clock, any origin)."""
        self.finished.inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.e2e.observe(finish - arrival)
        if admitted is not None:
            self.queue_time.observe(admitted - arrival)
        if first_token is not None:
            self.ttft.observe(first_token - arrival)
            if output_tokens > 1:
                self.tpot.observe((finish - first_token) / (output_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
