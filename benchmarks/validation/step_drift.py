"""Why the calibrated simulator runs slow at 85% load: calibration steps against validation steps.

Reads the serving traces of a validation run (``benchmarks/validation/run.sh``): the
calibration traces (``calibration/METHOD-N.jsonl``) and the real validation runs
(``traces/loadL-METHOD-rR.jsonl``). Per method and batch size it compares the target verify
time of the two sets, and splits the difference in two with a line per set of verify time
against the batch's *longest* context (the executor's attention pads every row to it):

* the context part: the calibration workload's contexts are longer;
* the drift part: the two lines' values at the same context (the host's speed, which moves by
  10-25% over minutes here).

    .venv/bin/python benchmarks/validation/step_drift.py [--run DIR] [--load 0.85] [--out DIR]

Writes DIR/{step_drift.json, step_drift.md, step_drift.png} (default: RUN/step-drift).
No torch: the traces are JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from specgrove.trace import read_trace  # noqa: E402

MIN_STEPS = 30  # a batch size needs this many steps in both sets to be compared


def verify_points(paths: list[Path]) -> dict[int, np.ndarray]:
    """Per batch size: rows of (longest context, summed context, verify ms) of every step."""
    rows: dict[int, list[tuple[float, float, float]]] = {}
    for path in paths:
        for s in read_trace(path).steps:
            ctx = [r.context_tokens for r in s.requests]
            if ctx:
                rows.setdefault(s.batch_size, []).append((max(ctx), sum(ctx), s.verify_ms))
    return {b: np.array(v) for b, v in rows.items()}


def compare(cal: np.ndarray, val: np.ndarray) -> dict:
    """Medians of both sets, and the verify ratio split at the validation's median longest
    context: lines of verify ms on longest context, one per set."""
    fit_c, fit_v = np.polyfit(cal[:, 0], cal[:, 2], 1), np.polyfit(val[:, 0], val[:, 2], 1)
    at = float(np.median(val[:, 0]))
    return {
        "steps": [int(len(cal)), int(len(val))],
        "longest_context": [float(np.median(cal[:, 0])), at],
        "summed_context": [float(np.median(cal[:, 1])), float(np.median(val[:, 1]))],
        "verify_ms": [float(np.median(cal[:, 2])), float(np.median(val[:, 2]))],
        "ratio": float(np.median(val[:, 2]) / np.median(cal[:, 2])),
        # The calibration line at the validation's context: what the calibration set would
        # have taken with the validation's contexts; against the validation line there, the drift.
        "ratio_at_same_context": float(np.polyval(fit_v, at) / np.polyval(fit_c, at)),
        "us_per_context_token": [float(fit_c[0] * 1e3), float(fit_v[0] * 1e3)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="benchmarks/results/validation-cpu", help="a validation run's directory")
    ap.add_argument("--load", default="0.85", help="the validation load to compare (as in the trace names)")
    ap.add_argument("--out", default=None, help="output directory (default: RUN/step-drift)")
    args = ap.parse_args(argv)
    run = Path(args.run)
    out = Path(args.out) if args.out else run / "step-drift"
    methods = sorted({p.stem.rsplit("-", 1)[0] for p in (run / "calibration").glob("*-*.jsonl")})
    if not methods:
        print(f"step_drift: no calibration traces (METHOD-N.jsonl) under {run / 'calibration'}", file=sys.stderr)
        return 2
    result: dict = {"run": str(run), "load": args.load, "methods": {}}
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False)
    for ax, m in zip(axes[0], methods):
        cal = verify_points(sorted((run / "calibration").glob(f"{m}-*.jsonl")))
        val = verify_points(sorted((run / "traces").glob(f"load{args.load}-{m}-r*.jsonl")))
        rows = {b: compare(cal[b], val[b]) for b in sorted(set(cal) & set(val))
                if len(cal[b]) >= MIN_STEPS and len(val[b]) >= MIN_STEPS}
        result["methods"][m] = rows
        if rows:
            b = max(rows)
            for name, pts, colour in (("calibration", cal[b], "tab:blue"), ("validation", val[b], "tab:orange")):
                ax.scatter(pts[:, 0], pts[:, 2], s=4, alpha=0.25, color=colour, label=f"{name} ({len(pts)} steps)")
                xs = np.linspace(pts[:, 0].min(), pts[:, 0].max(), 20)
                ax.plot(xs, np.polyval(np.polyfit(pts[:, 0], pts[:, 2], 1), xs), color=colour)
            ax.set_title(f"{m}, batch {b}")
            ax.set_xlabel("longest context in the batch (tokens)")
            ax.set_ylabel("verify ms")
            ax.set_ylim(0, float(np.percentile(np.concatenate([cal[b][:, 2], val[b][:, 2]]), 99)) * 1.1)
            ax.legend(fontsize=7)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "step_drift.png", dpi=110)
    (out / "step_drift.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Verify time: calibration steps against validation steps at load {args.load}", "",
             f"Run: `{run}`. Command: `.venv/bin/python benchmarks/validation/step_drift.py --run {run} "
             f"--load {args.load}`.", "",
             "Per batch size: median verify ms of each set, their ratio, and the ratio of two lines (verify "
             "ms on the batch's longest context, one per set) at the validation's median longest context: "
             "what is left once the contexts are the same (host drift).", "",
             "| method | batch | steps cal / val | longest context cal / val | verify ms cal / val | val / cal "
             "| at same context | us per context token cal / val |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m, rows in result["methods"].items():
        for b, r in rows.items():
            lines.append(f"| {m} | {b} | {r['steps'][0]} / {r['steps'][1]} | {r['longest_context'][0]:.0f} / "
                         f"{r['longest_context'][1]:.0f} | {r['verify_ms'][0]:.2f} / {r['verify_ms'][1]:.2f} | "
                         f"{r['ratio']:.2f} | {r['ratio_at_same_context']:.2f} | "
                         f"{r['us_per_context_token'][0]:.1f} / {r['us_per_context_token'][1]:.1f} |")
    (out / "step_drift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
