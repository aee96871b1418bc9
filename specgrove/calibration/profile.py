"""The calibration profile: what ``specgrove calibrate`` fitted, as a JSON file a scenario
names (``[calibration] profile = "..."``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from specgrove.cost import AffineCostModel
from specgrove.trace import Trace

PROFILE_VERSION = 1
DRAFT_FIELDS = ("confidence_mean", "confidence_concentration", "tail_ratio", "scale", "gamma")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and what is wrong."""


LOOKUP_FIELDS = {"orders", "accept", "context_edges", "orders_by_context", "lengths", "generated_edges",
                 "orders_by_generated"}
MIN_METHOD_STEPS = 100  # a method traced for fewer steps gets no cost model of its own


@dataclass
class Profile:
    cost: AffineCostModel  # fitted on every step of every method
    draft: dict  # SyntheticDraft parameters (exact mode); empty: not fitted (no draft tree traced)
    # method -> domain -> distinct [tree size, accepted + 1, rounds, expanded, count] (tabulated)
    acceptance_rows: dict[str, dict[str, list[list[int]]]]
    sources: list[str] = field(default_factory=list)  # the traces it was fitted on
    fit: dict = field(default_factory=dict)  # quality of each fit, for the report
    # Per traced method, a cost model fitted on that method's steps alone: the affine terms
    # average over the shapes of the trees a method verifies (a chain's deep row against a
    # wide tree's), so a method's own fit is truer for it. A scenario running a method not
    # here gets ``cost``.
    cost_by_method: dict[str, AffineCostModel] = field(default_factory=dict)
    # Seconds a client sees on top of the server's own times: the HTTP request in, the first
    # and the last chunk out (``calibrate --clients``; 0 without client runs). The simulator
    # adds it to every request's TTFT and E2E.
    frontend_s: float = 0.0
    # Prompt lookup's behaviour (``SyntheticLookup`` parameters: orders, accept), fitted on the
    # traced lookup chains; empty when the traces verified none.
    lookup: dict = field(default_factory=dict)
    # method -> domain -> {"edges": [output tokens], "rows": [rows per bin]}: the rows split by
    # how much of its own output the request had cached (tabulated mode draws each request's
    # row from its own bin; absent: from the pooled rows)
    acceptance_rows_by_generated: dict[str, dict[str, dict]] = field(default_factory=dict)

    def cost_for(self, method: str) -> AffineCostModel:
        return self.cost_by_method.get(method, self.cost)

    def to_json(self) -> dict:
        return {"version": PROFILE_VERSION, "sources": self.sources, "cost": asdict(self.cost),
                "cost_by_method": {m: asdict(c) for m, c in self.cost_by_method.items()},
                "frontend_s": self.frontend_s, "draft": self.draft, "lookup": self.lookup,
                "acceptance_rows": self.acceptance_rows,
                "acceptance_rows_by_generated": self.acceptance_rows_by_generated, "fit": self.fit}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a JSON profile ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
        raise ProfileError(f"{path}: profile version {data.get('version') if isinstance(data, dict) else None!r}; "
                           f"this reader reads {PROFILE_VERSION}")
    model = _cost_model(data.get("cost"), f"{path}: 'cost'")
    draft = data.get("draft")
    if not isinstance(draft, dict) or (draft and any(k not in draft for k in DRAFT_FIELDS)):
        raise ProfileError(f"{path}: 'draft' must have {', '.join(DRAFT_FIELDS)} (or be empty: not fitted)")
    by_method = data.get("cost_by_method", {})
    if not isinstance(by_method, dict):
        raise ProfileError(f"{path}: 'cost_by_method' must map method -> cost terms")
    by_method = {m: _cost_model(c, f"{path}: 'cost_by_method.{m}'") for m, c in by_method.items()}
    rows = _by_method_domain(data, "acceptance_rows", _are_rows, path,
                             "[tree size, accepted + 1, rounds, expanded, count] rows")
    binned = _by_method_domain(data, "acceptance_rows_by_generated", _are_bins, path,
                               "{edges: increasing output-token counts, rows: one non-empty row list per bin}")
    frontend = data.get("frontend_s", 0.0)
    if isinstance(frontend, bool) or not isinstance(frontend, (int, float)) or not 0 <= frontend < 60:
        raise ProfileError(f"{path}: 'frontend_s' must be seconds in [0, 60), got {frontend!r}")
    lookup = data.get("lookup", {})
    if lookup:
        from specgrove.sim.lookup import SyntheticLookup

        try:
            SyntheticLookup(tuple(lookup["orders"]), tuple(tuple(a) for a in lookup["accept"]),
                            tuple(lookup.get("context_edges", ())),
                            tuple(tuple(a) for a in lookup.get("orders_by_context", ())),
                            tuple(tuple(a) for a in lookup.get("lengths", ())),
                            tuple(lookup.get("generated_edges", ())),
                            tuple(tuple(a) for a in lookup.get("orders_by_generated", ())))
            unknown = set(lookup) - LOOKUP_FIELDS
            if unknown:
                raise ValueError(f"unknown fields {', '.join(sorted(unknown))}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{path}: 'lookup' must hold orders and accept chances ({exc})") from None
    return Profile(model, {k: float(draft[k]) for k in DRAFT_FIELDS if k in draft}, rows, list(data.get("sources", [])),
                   data.get("fit", {}), by_method, float(frontend), lookup, binned)


def _by_method_domain(data: dict, key: str, valid, path: Path, what: str) -> dict:
    """``data[key]`` (default empty), checked to map method -> domain -> something ``valid``."""
    value = data.get(key, {})
    if not (isinstance(value, dict) and all(isinstance(by, dict) and all(valid(v) for v in by.values())
                                            for by in value.values())):
        raise ProfileError(f"{path}: '{key}' must map method -> domain -> {what}")
    return value


def _are_rows(rows) -> bool:
    return isinstance(rows, list) and all(
        isinstance(x, list) and len(x) == 5 and all(isinstance(v, int) and v >= 0 for v in x) and x[4] > 0
        for x in rows)


def _are_bins(b) -> bool:
    if not isinstance(b, dict) or set(b) != {"edges", "rows"}:
        return False
    edges, rows = b["edges"], b["rows"]
    return (isinstance(edges, list) and len(edges) >= 1 and all(isinstance(e, int) for e in edges)
            and all(lo < hi for lo, hi in zip(edges, edges[1:]))
            and isinstance(rows, list) and len(rows) == len(edges) + 1 and all(_are_rows(r) and r for r in rows))


# Terms a profile written before they were fitted lacks: read as not fitted (prefills priced
# as forwards, no admission host work), which is what that profile's simulator charged.
LATER_COST_FIELDS = {"prefill_base_s", "prefill_per_request_s", "prefill_per_token_s", "draft_prefill_base_s",
                     "draft_prefill_per_request_s", "draft_prefill_per_token_s", "admit_base_s",
                     "admit_per_request_s", "after_prefill_s"}


def _cost_model(cost, where: str) -> AffineCostModel:
    cost_fields = {f.name for f in fields(AffineCostModel)}
    if not isinstance(cost, dict) or not cost_fields - LATER_COST_FIELDS <= set(cost) <= cost_fields:
        raise ProfileError(f"{where} must have exactly the fields {', '.join(sorted(cost_fields))}")
    try:
        return AffineCostModel(**{k: None if v is None and k.startswith(("prefill_", "draft_prefill_")) else float(v)
                                  for k, v in cost.items()})
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: {exc}") from None


def by_method(trace: Trace) -> dict[str, Trace]:
    """The trace's records split by the method that ran them (``labels.method``)."""
    out: dict[str, Trace] = {}
    for rec in [*trace.steps, *trace.prefills, *trace.requests]:
        out.setdefault(rec.labels.method, Trace()).add(rec)
    return out


def frontend_latency(trace: Trace, client_ttft_s: list[float]) -> float:
    """Seconds the clients saw on top of the server: their mean TTFT (``specgrove load``'s
    requests) less the server's mean TTFT over the same requests (the trace's ``request``
    lines, arrival stamped when the server received the request). Both sets must be the same
    requests, so their counts must agree."""
    served = [r.first_token_s - r.arrival_s for r in trace.requests]
    if len(served) != len(client_ttft_s):
        raise ProfileError(f"the client runs hold {len(client_ttft_s)} finished requests but the traces "
                           f"{len(served)}: pass the load runs of exactly the traced servers")
    if not served:
        raise ProfileError("the traces hold no finished requests to compare the client runs with")
    return max(0.0, float(sum(client_ttft_s) / len(client_ttft_s) - sum(served) / len(served)))


def calibrate(trace: Trace, sources: list[str]) -> tuple[Profile, list]:
    """Fit a profile to a trace; also returns the cost components (for the report's plot)."""
    from specgrove.calibration.acceptance_fit import (
        acceptance_curve,
        acceptance_rows,
        acceptance_rows_by_generated,
        fit_draft,
        fit_lookup,
    )
    from specgrove.calibration.cost_fit import fit_cost

    if not trace.steps:
        raise ProfileError("the traces hold no steps")
    model, comps = fit_cost(trace)
    lookup = fit_lookup(trace)
    fit = {c.name: c.quality() for c in comps}
    try:
        fitted = fit_draft(trace)
    except ValueError:
        if not lookup:
            raise
        # Prompt lookup alone: no draft tree to fit, so the draft stays the pair's own.
        draft, fit["acceptance"] = {}, {"levels": 0, "curve": None}
    else:
        draft = {k: fitted[k] for k in DRAFT_FIELDS}
        fit["acceptance"] = {"levels": fitted["levels"], "curve": acceptance_curve(trace)}
    costs, fit["by_method"] = {}, {}
    parts = by_method(trace)
    if len(parts) > 1:
        for method, part in sorted(parts.items()):
            if method and len(part.steps) >= MIN_METHOD_STEPS:
                costs[method], method_comps = fit_cost(part)
                fit["by_method"][method] = {c.name: c.quality() for c in method_comps}
    if lookup:
        fit["lookup"] = lookup.pop("evidence")
    return Profile(model, draft, acceptance_rows(trace), sources, fit, costs, lookup=lookup,
                   acceptance_rows_by_generated=acceptance_rows_by_generated(trace)), comps
