"""Where a replica's models run: the simulator's ``[deployment]`` words, for the executor.

``tp`` shards the target (and a draft that shares its devices) over that many ranks;
``draft_placement = "separate"`` gives the draft a rank of its own after the target's, which
drafts one micro-batch while the target verifies the other (``microbatches``, 2 by default);
``num_replicas`` copies of that layout serve behind a router policy. This module imports no
torch, so the CLI checks placements before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class PairSource:
    """What each process loads, picklable: local paths (both None: the embedded demo pair),
    the device, and torch's CPU threads (None: torch's default)."""

    target: str | None = None
    draft: str | None = None
    device: str = "cpu"
    threads: int | None = None

    def load(self, device: str | None = None):
        from specgrove.executor.loading import load_pair

        return load_pair(self.target, self.draft, device=device or self.device)


class PlacementError(ValueError):
    """A placement that cannot run; the message names the field."""


@dataclass(frozen=True)
class Placement:
    tp: int = 1
    draft_placement: Literal["same", "separate"] = "same"
    num_replicas: int = 1
    microbatches: int = 2  # with a separate draft: micro-batches in flight (1 = no overlap)

    def __post_init__(self) -> None:
        if self.tp < 1:
            raise PlacementError(f"tp must be >= 1, got {self.tp}")
        if self.draft_placement not in ("same", "separate"):
            raise PlacementError(f"draft_placement must be 'same' or 'separate', got {self.draft_placement!r}")
        if self.num_replicas < 1:
            raise PlacementError(f"num_replicas must be >= 1, got {self.num_replicas}")
        if self.microbatches not in (1, 2):
            raise PlacementError(f"microbatches must be 1 or 2, got {self.microbatches}")

    @property
    def is_separate(self) -> bool:
        return self.draft_placement == "separate"

    @property
    def world_size(self) -> int:
        """Ranks of one replica: the target's ``tp`` ranks, then the draft's if separate."""
        return self.tp + (1 if self.is_separate else 0)

    @property
    def draft_rank(self) -> int | None:
        return self.tp if self.is_separate else None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        parts = [f"tp={self.tp}", f"draft={self.draft_placement}"]
        if self.is_separate:
            parts.append(f"microbatches={self.microbatches}")
        if self.num_replicas > 1:
            parts.append(f"replicas={self.num_replicas}")
        return ", ".join(parts)


def placement_from_deployment(path: str | Path) -> Placement:
    """The ``[deployment]`` section of a scenario TOML, checked by the simulator's own schema,
    in the executor's terms. Fields the executor has no use for (GPU memory, MFU) are ignored;
    a draft on more than one separate device is refused, the executor gives it one rank."""
    from specgrove.sim.scenario import DeploymentSpec, ScenarioError, read_scenario_file
    from pydantic import ValidationError

    try:
        data = read_scenario_file(path)
    except ScenarioError as exc:
        raise PlacementError(str(exc)) from None
    section = data.get("deployment", {})
    if not isinstance(section, dict):
        raise PlacementError(f"{path}: [deployment] must be a table")
    try:
        spec = DeploymentSpec(**section)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise PlacementError(f"{path}: deployment.{field}: {err['msg']}") from None
    except ScenarioError as exc:
        raise PlacementError(f"{path}: {exc}") from None
    if spec.draft_placement == "separate" and spec.draft_gpus != 1:
        raise PlacementError(f"{path}: deployment.draft_gpus: the executor gives a separate draft one rank, got {spec.draft_gpus}")
    return Placement(tp=spec.tp, draft_placement=spec.draft_placement, num_replicas=spec.num_replicas,
                     microbatches=spec.microbatches)
