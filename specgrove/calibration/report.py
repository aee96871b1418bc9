"""The calibration report: fit quality as markdown, measured against fitted as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specgrove.calibration.profile import DRAFT_FIELDS, Profile

# Cost components in report order: the step's three, then a separate prefill's (when fitted).
COMPONENTS = ("verify", "draft", "other", "prefill", "draft_prefill", "admit", "after_prefill")


def markdown(profile: Profile, command: str) -> str:
    lines = ["# Calibration profile", "", f"Command: `{command}`", "",
             "Traces: " + ", ".join(f"`{s}`" for s in profile.sources), "",
             "## Cost model (least squares, Huber loss for far outliers)", "",
             "| component | points | R² | rel. error p50 | p90 | p99 | mean measured ms | mean fitted ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in COMPONENTS:
        if name not in profile.fit:
            continue  # prefill terms: fitted only from traces with prefill lines
        q = profile.fit[name]
        if not q.get("points"):
            lines.append(f"| {name} | 0 | - | - | - | - | - | - |")
            continue
        lines.append(f"| {name} | {q['points']} | {q['r2']:.4f} | {q['rel_error_p50']:.1%} | {q['rel_error_p90']:.1%} | "
                     f"{q['rel_error_p99']:.1%} | {q['mean_measured_ms']:.3f} | {q['mean_fitted_ms']:.3f} |")
    lines += ["", "Fitted terms (seconds): " + ", ".join(f"`{k}` {v:.3g}" for k, v in vars(profile.cost).items() if v), "",
              f"Front-end latency (`frontend_s`, what clients saw on top of the servers' TTFT; 0 without "
              f"`--clients`): {profile.frontend_s * 1e3:.2f} ms", ""]
    if profile.cost_by_method:
        lines += ["### Per method", "",
                  "Each traced method also gets a cost model fitted on its own steps, which a scenario "
                  "running that method uses (others get the pooled one above).", "",
                  "| method | component | points | R² | rel. error p50 | mean measured ms | mean fitted ms |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for method, quality in profile.fit.get("by_method", {}).items():
            for name in COMPONENTS:
                q = quality.get(name, {})
                if q.get("points"):
                    lines.append(f"| {method} | {name} | {q['points']} | {q['r2']:.4f} | {q['rel_error_p50']:.1%} | "
                                 f"{q['mean_measured_ms']:.3f} | {q['mean_fitted_ms']:.3f} |")
        lines.append("")
    lines += [
              "## Acceptance", "",
              (f"Synthetic draft (exact mode), fitted on {profile.fit.get('acceptance', {}).get('levels', 0)} tested "
               "tree levels: " + ", ".join(f"`{k}` {profile.draft[k]:.3f}" for k in DRAFT_FIELDS)
               if profile.draft else "Synthetic draft: not fitted (the traces hold no draft tree); the pair's own stands."),
              "",
              *_lookup_lines(profile),
              "Measured rows (tabulated mode): " + ", ".join(
                  f"`{m}` ({', '.join(f'{d}: {sum(x[4] for x in r)} request steps' for d, r in by.items())})"
                  for m, by in profile.acceptance_rows.items()),
              *_generated_lines(profile)]
    return "\n".join(lines) + "\n"


def _generated_lines(profile: Profile) -> list[str]:
    """The tabulated rows by output cached: how many steps each bin holds and what they
    emitted on average."""
    if not profile.acceptance_rows_by_generated:
        return []
    lines = ["", "Measured rows by how much of its own output the request had cached (tabulated mode draws each "
             "request's row from its own bin):", "",
             "| method | domain | output tokens cached | request steps | mean emitted (accepted + 1) |",
             "|---|---|---|---:|---:|"]
    for method, by in profile.acceptance_rows_by_generated.items():
        for domain, b in by.items():
            bounds = [None, *b["edges"], None]
            for lo, hi, rows in zip(bounds, bounds[1:], b["rows"]):
                label = f"< {hi}" if lo is None else f">= {lo}" if hi is None else f"{lo}-{hi - 1}"
                steps = sum(r[4] for r in rows)
                mean = sum(r[1] * r[4] for r in rows) / steps
                lines.append(f"| {method} | {domain} | {label} | {steps} | {mean:.2f} |")
    return lines


def _lookup_lines(profile: Profile) -> list[str]:
    if not profile.lookup:
        return []
    evidence = profile.fit.get("lookup", {})
    lines = [f"Prompt lookup (exact mode), fitted on {evidence.get('requests', 0)} request steps of lookup chains:", "",
             "| match order | share of requests | acceptance by depth | chain of 1, 2, ... tokens |", "|---:|---:|---|---|"]
    lengths = profile.lookup.get("lengths") or [[]] * len(profile.lookup["orders"])
    for n, (share, accept, held) in enumerate(zip(profile.lookup["orders"], profile.lookup["accept"], lengths), start=1):
        lines.append(f"| {n} | {share:.3f} | {', '.join(f'{p:.2f}' for p in accept)} | {', '.join(f'{p:.2f}' for p in held)} |")
    for key, title, header in (
            ("context", "Order shares by the request's context length (cached tokens; a bin with under 100 request "
                        "steps takes the overall shares):", "context"),
            ("generated", "Order shares by the request's own output cached (tokens; what the simulator draws from, "
                          "the context bins above standing in only where a profile lacks these):", "output cached")):
        edges, rows = profile.lookup.get(f"{key}_edges", []), profile.lookup.get(f"orders_by_{key}", [])
        if not rows:
            continue
        counts = evidence.get(f"requests_by_{key}") or [None] * len(rows)
        names = [f"< {edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]}"]
        lines += ["", title, "", f"| {header} | request steps | "
                  + " | ".join(f"order {n}" for n in range(1, len(rows[0]) + 1)) + " |", "|---|---:|" + "---:|" * len(rows[0])]
        lines += [f"| {name} | {count if count is not None else ''} | " + " | ".join(f"{p:.3f}" for p in row) + " |"
                  for name, count, row in zip(names, counts, rows)]
    return lines + [""]


def plot(profile: Profile, components: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 4
    nrows = (len(components) + 1 + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(16, 3.8 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(components) + 1:]:
        ax.axis("off")
    for ax, comp in zip(axes, components):
        if len(comp.measured):
            y, f = comp.measured * 1e3, comp.fitted * 1e3
            ax.scatter(y, f, s=6, alpha=0.4)
            top = max(float(y.max()), float(f.max())) * 1.05
            ax.plot([0, top], [0, top], color="black", lw=0.8)
            r2 = profile.fit[comp.name].get("r2")
            ax.set_title(f"{comp.name} time, R² {r2:.3f}")
        ax.set(xlabel="measured (ms)", ylabel="fitted (ms)")
    curve = profile.fit.get("acceptance", {}).get("curve")
    ax = axes[len(components)]
    if curve:
        edges = np.asarray(curve["edges"])
        mids = (edges[:-1] + edges[1:]) / 2
        count = np.asarray(curve["count"])
        keep = count > 0
        ax.scatter(mids[keep], np.asarray(curve["rate"])[keep], s=10 + 60 * count[keep] / max(count.max(), 1),
                   label="measured (top child)")
        q = np.linspace(0.01, 1, 100)
        ax.plot(q, np.minimum(profile.draft["scale"] * q ** profile.draft["gamma"], 1), color="C1",
                label=f"fit: {profile.draft['scale']:.2f} q^{profile.draft['gamma']:.2f}")
        ax.legend(fontsize=8)
    ax.set(xlabel="node score q", ylabel="P(accepted)", title="confidence -> acceptance", xlim=(0, 1), ylim=(0, 1.05))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
