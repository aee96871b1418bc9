"""``specgrove presets [--json]``: the simulator's presets and their figures.

GPUs (dense bf16 FLOP/s, memory bandwidth, memory, per-forward overhead), links (bandwidth,
latency), models (parameters, layers, hidden size, heads, KV bytes per token, context length
``max_positions``) and draft/target pairs (their models, the pair's context, and the
synthetic draft's acceptance figures with the defaults filled in). The names are those a
scenario's ``cluster.gpu``, ``cluster.intra_link``/``inter_link``, ``models.target``/``draft``
and ``models.pair`` take. No torch: this reads ``specgrove.sim``'s tables only.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--kind", choices=("gpus", "links", "models", "pairs"), action="append",
                        help="show only this kind of preset; repeat for several (default: all)")


def preset_data() -> dict[str, dict[str, dict]]:
    """Every preset, as plain data: kind -> name -> figures (SI units: bytes, FLOP/s, s)."""
    from dataclasses import asdict, fields

    from specgrove.sim.acceptance import SyntheticDraft
    from specgrove.sim.lookup import SyntheticLookup
    from specgrove.sim.hardware import GPUS, LINKS
    from specgrove.sim.models import MODELS, PAIRS, context_tokens

    draft_defaults = {f.name: getattr(SyntheticDraft, f.name) for f in fields(SyntheticDraft)}
    lookup_defaults = {f.name: getattr(SyntheticLookup, f.name) for f in fields(SyntheticLookup)}
    models = {}
    for name, m in MODELS.items():
        entry = asdict(m)
        entry.pop("name")
        entry.update(weight_bytes=m.weight_bytes, kv_bytes_per_token=m.kv_bytes_per_token, head_dim=m.head_dim)
        models[name] = entry
    return {
        "gpus": {name: {k: v for k, v in asdict(g).items() if k != "name"} for name, g in GPUS.items()},
        "links": {name: {k: v for k, v in asdict(link).items() if k != "name"} for name, link in LINKS.items()},
        "models": models,
        "pairs": {
            name: {
                "target": p.target,
                "draft": p.draft,
                "context_tokens": context_tokens(MODELS[p.target], MODELS[p.draft]),
                "acceptance": {**draft_defaults, **p.draft_behaviour},
                "lookup": {k: [list(x) if isinstance(x, tuple) else x for x in v]
                           for k, v in {**lookup_defaults, **p.lookup_behaviour}.items()},
            }
            for name, p in PAIRS.items()
        },
    }


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _table(title: str, head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([title, line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def tables(data: dict) -> str:
    parts = []
    if "gpus" in data:
        parts.append(_table("GPUs (cluster.gpu)", ["name", "bf16 dense", "mem bandwidth", "memory", "forward overhead"], [
            [n, _si(g["peak_flops"], "FLOP/s"), _si(g["mem_bandwidth"], "B/s"), f"{g['mem_bytes'] / 2**30:.0f} GiB",
             f"{g['forward_overhead_s'] * 1e6:.0f} us"] for n, g in data["gpus"].items()]))
    if "links" in data:
        parts.append(_table("Links (cluster.intra_link, cluster.inter_link)", ["name", "bandwidth (one way)", "latency"], [
            [n, _si(link["bandwidth"], "B/s"), f"{link['latency_s'] * 1e6:.0f} us"] for n, link in data["links"].items()]))
    if "models" in data:
        parts.append(_table("Models (models.target, models.draft)",
                            ["name", "params", "layers", "hidden", "heads", "kv heads", "dtype bytes", "weights",
                             "KV/token", "context (max_positions)"], [
            [n, _si(m["num_params"], ""), str(m["num_layers"]), str(m["hidden_size"]), str(m["num_heads"]),
             str(m["num_kv_heads"]), str(m["bytes_per_param"]), _si(m["weight_bytes"], "B"),
             f"{m['kv_bytes_per_token'] / 1024:.0f} KiB", str(m["max_positions"])] for n, m in data["models"].items()]))
    if "pairs" in data:
        parts.append(_table("Pairs (models.pair; acceptance: the synthetic draft, [acceptance.draft])",
                            ["name", "target", "draft", "context", "confidence_mean", "concentration", "tail_ratio",
                             "scale", "gamma"], [
            [n, p["target"], p["draft"], str(p["context_tokens"]), f"{p['acceptance']['confidence_mean']:g}",
             f"{p['acceptance']['confidence_concentration']:g}", f"{p['acceptance']['tail_ratio']:g}",
             f"{p['acceptance']['scale']:g}", f"{p['acceptance']['gamma']:g}"] for n, p in data["pairs"].items()]))
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    data = preset_data()
    if args.kind:
        data = {k: v for k, v in data.items() if k in args.kind}
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(tables(data))
    return 0
