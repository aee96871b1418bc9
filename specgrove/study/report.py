"""The study's files: CSVs of every run, the figures drawn from them, study.json and report.md."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from specgrove.study import figures
from specgrove.study.settings import DYNAMIC, STATIC, Settings

# name -> (file, CSV it is drawn from, caption). The report names exactly these files.
FIGURES = {
    "real_speedup": ("real_speedup.png", "real.csv",
                     "Real runs of the demo pair on this machine: tokens/s of each method over plain decoding "
                     "(`ar`, the line at 1) at the same batch size; one panel per prompt domain and temperature."),
    "real_tau": ("real_tau.png", "real.csv",
                 "Real runs: tau, the tokens emitted per target forward, per method and batch size; one panel per "
                 "prompt domain and temperature."),
    "sim_load": ("sim_load.png", "sim.csv",
                 "Simulated H100 deployments: mean end-to-end latency (log scale) and output throughput against the "
                 "arrival rate, one line per tree policy, for the 7B and the 70B pair."),
    "sim_speedup": ("sim_speedup.png", "sim_speedups.csv",
                    "Simulated: the latency speed-up of each dynamic policy (rows) over each static tree and `ar` "
                    "(bars: the baseline's mean end-to-end latency over the dynamic policy's), per load; above 1 the "
                    "dynamic tree is faster."),
    "sim_deployment": ("sim_deployment.png", "sim.csv",
                       "Simulated: mean end-to-end latency per tree policy across the target's TP degree, the draft's "
                       "placement (its own GPU: two micro-batches in ping-pong) and the split of a capped step "
                       "node budget (uniform or greedy-global), at the loads given in the setup."),
}


def write_csv(rows: list[dict], path: Path) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _f(value, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in body)]


def real_ratios(rows: list[dict]) -> list[dict]:
    """Per (domain, temperature, batch): each dynamic method's tokens/s over each static tree's."""
    out = []
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["domain"], r["temperature"], r["batch_size"]), {})[r["method"]] = r
    for (domain, temp, batch), by in cells.items():
        best = max(by.values(), key=lambda r: r["tokens_per_s"])
        row = {"domain": domain, "temperature": temp, "batch_size": batch, "fastest": best["method"],
               "fastest_speedup_vs_ar": best["speedup_vs_ar"]}
        for cand in DYNAMIC:
            for base in (*STATIC, "ar"):
                if cand in by and base in by and by[base]["tokens_per_s"]:
                    row[f"{cand}/{base}"] = by[cand]["tokens_per_s"] / by[base]["tokens_per_s"]
        out.append(row)
    return out


def _figure(lines: list[str], number: int, key: str, command: str) -> None:
    file, data, caption = FIGURES[key]
    lines += [f"![Figure {number}]({file})", "",
              f"*Figure {number}. {caption} Data: `{data}`. Made by: `{command}`.*", ""]


def _real_section(rows: list[dict], ratios: list[dict], s: Settings, command: str) -> list[str]:
    lines = ["## Real runs on this machine", ""]
    _figure(lines, 1, "real_speedup", command)
    head = ["domain", "T", "batch", "fastest (x ar)"] + [f"{c} / {b}" for c in DYNAMIC for b in (*STATIC, "ar")]
    body = [[r["domain"], f"{r['temperature']:g}", str(r["batch_size"]),
             f"{r['fastest']} ({r['fastest_speedup_vs_ar']:.2f})"]
            + [_f(r.get(f"{c}/{b}")) for c in DYNAMIC for b in (*STATIC, "ar")] for r in ratios]
    lines += ["Tokens/s of each dynamic policy over each static tree and `ar` (above 1: the dynamic tree is "
              "faster). Data: `real_ratios.csv`.", "", *_table(head, body), ""]
    _figure(lines, 2, "real_tau", command)
    greedy = [r for r in rows if r["temperature"] == 0 and r["outputs_equal_ar"]]
    if greedy:
        same = all(r["outputs_equal_ar"].split("/")[0] == r["outputs_equal_ar"].split("/")[1] for r in greedy)
        lines += [f"Greedy outputs equal `ar`'s token for token in every run: {'yes' if same else 'NO'} "
                  "(column `outputs_equal_ar` of `real.csv`). At temperature 1 outputs are sampled and not compared.",
                  ""]
    return lines


def _sim_section(rows: list[dict], speedups: list[dict], command: str) -> list[str]:
    lines = ["## Simulated clusters", ""]
    _figure(lines, 3, "sim_load", command)
    _figure(lines, 4, "sim_speedup", command)
    load = [x for x in speedups if x["experiment"] == "load"]
    head = ["pair", "rate (req/s)"] + [f"{c} / {b}" for c in DYNAMIC for b in (*STATIC, "ar")]
    cells: dict[tuple, dict] = {}
    for x in load:
        cells.setdefault((x["pair"], x["x"]), {})[f"{x['dynamic']} / {x['baseline']}"] = x["e2e_speedup"]
    body = [[pair, f"{rate:g}"] + [_f(v.get(h)) for h in head[2:]] for (pair, rate), v in cells.items()]
    lines += ["Latency speed-up (baseline's mean end-to-end latency over the dynamic policy's). "
              "Data: `sim_speedups.csv`.", "", *_table(head, body), ""]
    _figure(lines, 5, "sim_deployment", command)
    return lines


def _findings(ratios: list[dict], speedups: list[dict]) -> list[str]:
    """Sentences computed from the tables: where dynamic trees beat the best static tree."""
    lines = ["## Findings (computed from the tables above)", ""]
    for cand in DYNAMIC:
        vs = [r for r in ratios if all(f"{cand}/{b}" in r for b in STATIC)]
        wins = [r for r in vs if min(r[f"{cand}/{b}"] for b in STATIC) > 1]
        lines.append(f"* Real: `{cand}` beat every static tree in {len(wins)} of {len(vs)} cells (domain, "
                     "temperature, batch)" + (": " + ", ".join(f"{r['domain']}/T={r['temperature']:g}/b={r['batch_size']}"
                                                               for r in wins) if wins else "") + ".")
        ar_wins = [r for r in ratios if r.get(f"{cand}/ar", 0) > 1]
        lines.append(f"* Real: `{cand}` beat `ar` in {len(ar_wins)} of {len(ratios)} cells.")
    fastest = {}
    for r in ratios:
        fastest[r["fastest"]] = fastest.get(r["fastest"], 0) + 1
    lines.append("* Real: fastest method per cell: " + ", ".join(f"`{m}` {n}" for m, n in sorted(fastest.items())) + ".")
    for cand in DYNAMIC:
        mine = [x for x in speedups if x["dynamic"] == cand and x["baseline"] in STATIC]
        cells: dict[tuple, list[float]] = {}
        for x in mine:
            cells.setdefault((x["experiment"], x["pair"], x["x"]), []).append(x["e2e_speedup"])
        wins = [k for k, v in cells.items() if all(s > 1 for s in v if not math.isnan(s))]
        lines.append(f"* Simulated: `{cand}` had a lower mean end-to-end latency than every static tree in "
                     f"{len(wins)} of {len(cells)} settings (all experiments, both pairs).")
    return lines + [""]


def write_report(out: Path, settings: Settings, real_rows: list[dict], real_info: dict, sim_rows: list[dict],
                 sim_info: dict, speedups: list[dict], command: str, meta: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    ratios = real_ratios(real_rows)
    write_csv(real_rows, out / "real.csv")
    write_csv(ratios, out / "real_ratios.csv")
    write_csv(sim_rows, out / "sim.csv")
    write_csv(speedups, out / "sim_speedups.csv")
    figures.real_figure(real_rows, out / FIGURES["real_speedup"][0], "speedup_vs_ar", "tokens/s over ar", 1.0)
    figures.real_figure(real_rows, out / FIGURES["real_tau"][0], "tau", "tau (tokens per target forward)", None)
    figures.sim_load_figure(sim_rows, out / FIGURES["sim_load"][0])
    figures.sim_speedup_figure(speedups, out / FIGURES["sim_speedup"][0])
    figures.sim_deployment_figure(sim_rows, out / FIGURES["sim_deployment"][0])
    (out / "study.json").write_text(json.dumps({**meta, "settings": asdict(settings), "real": real_info,
                                                "sim": sim_info, "figures": FIGURES}, indent=2, default=str) + "\n")
    lines = [f"# specgrove study ({settings.name}): dynamic against static trees", "",
             f"Command: `{command}`  ", f"Finished: {meta['finished_utc']} (UTC)  ",
             f"Machine: {real_info.get('device', '-')}; load average {meta['load_average']} when it ended  ",
             f"Run time: {meta['seconds']:.0f} s in all (real runs {real_info.get('seconds', 0):.0f} s, simulation "
             f"{sim_info['seconds']:.0f} s)", ""]
    lines += _setup(settings)
    lines += _real_section(real_rows, ratios, settings, command)
    lines += _sim_section(sim_rows, speedups, command)
    lines += _findings(ratios, speedups)
    lines += ["## Files", "", "`real.csv` (one row per domain, temperature, batch size and method), `real_ratios.csv`, "
              "`sim.csv` (one row per simulated run), `sim_speedups.csv`, `study.json` (settings and timings), and the "
              "figures above. `specgrove dashboard --study DIR` shows them as interactive charts.", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def _setup(s: Settings) -> list[str]:
    pairs = "; ".join(f"`{p.pair}` at TP {p.tp}, loads {', '.join(f'{r:g}' for r in p.rates)} req/s "
                      f"(TP {', '.join(map(str, p.tps))} at {p.mid_rate:g} req/s)" for p in s.sim_pairs)
    note = (" One repeat and few tokens: tokens/s carry run-to-run noise; the full study "
            "(`specgrove study --out DIR`) runs more prompts, tokens and repeats." if s.repeats == 1 else "")
    return [
        "## Setup", "",
        f"* Real: the embedded `demo` pair, methods {', '.join(f'`{m}`' for m in s.methods)}; "
        f"{s.prompts_per_domain} prompts per domain (the first of `benchmarks/prompts/{{{','.join(s.domains)}}}.jsonl`, "
        f"cycled when a file has fewer), {s.max_new_tokens} new tokens each, batch sizes "
        f"{', '.join(map(str, s.batch_sizes))}, tree budget {s.budget}, temperatures "
        f"{', '.join(f'{t:g}' for t in s.temperatures)}; medians of {s.repeats} interleaved repeat(s) after a warm-up "
        "(`specgrove.executor.bench.run_bench`; temperature 1 runs the same engines with sampling)." + note,
        f"* Simulated: one replica per pair on a node of 8 H100-SXM (NVLink); {pairs}. Poisson arrivals for "
        f"{s.sim_duration_s:g} s, lognormal prompts (median 384, max 1024) and outputs (median 192, max 512), tabulated "
        f"acceptance ({s.sim_samples} samples), tree budget {s.budget}, FCFS; every run of an experiment sees the same "
        f"arrivals. Deployment experiments compare {', '.join(f'`{p}`' for p in s.deploy_policies)}; the batch-budget "
        f"experiment caps a step at {s.batch_node_budget} nodes over the batch at the top load, with exact acceptance "
        f"(a tabulated step splits a cap uniformly whatever the policy), for {s.budget_duration_s:g} s "
        f"of arrivals, on {', '.join(f'`{p.pair}`' for p in s.sim_pairs if p.key in s.budget_pairs)}.", "",
    ]
