"""What the front-end knows of each replica's load, for the router policy."""

from __future__ import annotations

from specgrove.policies.router import ReplicaLoad, Router
from specgrove.trace import StepRecord
from specgrove.types import Request


class NoReplicaError(RuntimeError):
    """Every replica has failed."""


class LoadBook:
    """What the front-end knows of each replica's load, as ``ReplicaLoad`` for the router: its
    requests and the tokens they still have to generate (its own bookkeeping), and tau and
    seconds per step (exponential averages of the replica's step records; until a replica has
    stepped, the mean of those that have, else 1)."""

    def __init__(self, num_replicas: int, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.alive = [True] * num_replicas
        self.outstanding: list[dict[int, int]] = [{} for _ in range(num_replicas)]
        self.tau: list[float | None] = [None] * num_replicas
        self.step_s: list[float | None] = [None] * num_replicas

    def live(self) -> list[int]:
        return [i for i, ok in enumerate(self.alive) if ok]

    def assign(self, replica: int, key: int, tokens: int) -> None:
        self.outstanding[replica][key] = tokens

    def consume(self, replica: int, key: int, tokens: int) -> None:
        left = self.outstanding[replica]
        if key in left:
            left[key] = max(0, left[key] - tokens)

    def release(self, replica: int, key: int) -> None:
        self.outstanding[replica].pop(key, None)

    def observe(self, replica: int, rec) -> None:
        if not isinstance(rec, StepRecord) or not rec.requests:
            return
        tau = sum(s.emitted for s in rec.requests) / len(rec.requests)
        step_s = rec.end_s - rec.start_s
        a = self.alpha
        old_tau, old_step = self.tau[replica], self.step_s[replica]
        self.tau[replica] = tau if old_tau is None else (1 - a) * old_tau + a * tau
        self.step_s[replica] = step_s if old_step is None else (1 - a) * old_step + a * step_s

    def fail(self, replica: int) -> list[int]:
        """Mark a replica dead; returns the keys it held."""
        self.alive[replica] = False
        keys = list(self.outstanding[replica])
        self.outstanding[replica].clear()
        return keys

    def loads(self) -> list[ReplicaLoad]:
        live = self.live()

        def fill(values: list[float | None]) -> list[float]:
            known = [values[i] for i in live if values[i] is not None]
            default = sum(known) / len(known) if known else 1.0
            return [default if v is None else v for v in values]

        tau, step_s = fill(self.tau), fill(self.step_s)
        return [ReplicaLoad(i, len(self.outstanding[i]), sum(self.outstanding[i].values()), tau[i], step_s[i])
                for i in live]

    def route(self, router: Router, request: Request) -> int:
        loads = self.loads()
        if not loads:
            raise NoReplicaError("no replica is alive")
        chosen = router.route(request, loads)
        if not (0 <= chosen < len(self.alive) and self.alive[chosen]):
            raise RuntimeError(f"the router chose replica {chosen}, which is not alive")
        return chosen
