"""``specgrove calibrate TRACES... --out PROFILE``: fit the simulator to step traces."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from specgrove.commands import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", help="step traces (generate/bench/serve/sim --trace)")
    parser.add_argument("--out", required=True, help="the profile to write (JSON); a .md report and .png beside it")
    parser.add_argument("--clients", nargs="+", metavar="LOAD_DIR",
                        help="`specgrove load` runs against the traced servers: their requests.csv give the "
                             "clients' TTFT, and the profile's frontend_s what the clients saw on top of the server")


def run(args: argparse.Namespace) -> int:
    from specgrove.calibration.profile import ProfileError, calibrate
    from specgrove.calibration.report import markdown, plot
    from specgrove.trace import StepTraceError, Trace, read_trace

    out = Path(args.out)
    if out.suffix != ".json":
        raise UsageError(f"--out {args.out!r}: the profile is a .json file")
    if not out.parent.exists() or not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: directory {str(out.parent)!r} does not exist")
    merged = Trace()
    for path in args.traces:
        try:
            got = read_trace(path)
        except StepTraceError as exc:
            raise UsageError(str(exc)) from None
        merged.steps += got.steps
        merged.prefills += got.prefills
        merged.requests += got.requests
    try:
        profile, comps = calibrate(merged, [str(Path(p).resolve()) for p in args.traces])
        if args.clients:
            from specgrove.calibration.profile import frontend_latency

            profile.frontend_s = frontend_latency(merged, _client_ttfts(args.clients))
    except (ProfileError, ValueError) as exc:
        raise UsageError(f"cannot calibrate: {exc}") from None
    profile.save(out)
    command = "specgrove " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "specgrove calibrate"
    out.with_suffix(".md").write_text(markdown(profile, command))
    plot(profile, comps, out.with_suffix(".png"))
    for name in ("verify", "draft", "other"):
        q = profile.fit[name]
        if q.get("points"):
            print(f"{name:>6}: {q['points']} points, R² {q['r2']:.4f}, relative error p50 {q['rel_error_p50']:.1%} "
                  f"p99 {q['rel_error_p99']:.1%}")
    d = profile.draft
    if d:
        print(f" draft: confidence {d['confidence_mean']:.3f}, acceptance = {d['scale']:.3f} q^{d['gamma']:.3f}")
    else:
        print(" draft: not fitted (no draft tree in the traces)")
    if profile.lookup:
        shares = ", ".join(f"order {n}: {p:.2f}" for n, p in enumerate(profile.lookup["orders"], start=1))
        print(f"lookup: matches {shares}; first-token acceptance "
              + ", ".join(f"{a[0]:.2f}" for a in profile.lookup["accept"]))
    if args.clients:
        print(f" front-end: clients saw {profile.frontend_s * 1e3:.2f} ms more TTFT than the servers")
    print(f"wrote {out}, {out.with_suffix('.md').name}, {out.with_suffix('.png').name}")
    return 0


def _client_ttfts(dirs: list[str]) -> list[float]:
    """Every finished request's TTFT from ``specgrove load`` runs (their requests.csv)."""
    import csv
    import math

    out = []
    for d in dirs:
        path = Path(d) / "requests.csv"
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as exc:
            raise UsageError(f"--clients {d!r}: cannot read {path}: {exc.strerror}") from None
        if rows and "ttft_s" not in rows[0]:
            raise UsageError(f"--clients {d!r}: {path} has no ttft_s column (not a `specgrove load` run)")
        for row in rows:
            try:
                ttft = float(row["ttft_s"])
            except ValueError:
                raise UsageError(f"--clients {d!r}: {path}: ttft_s {row['ttft_s']!r} is not a number") from None
            if not row.get("error") and math.isfinite(ttft):
                out.append(ttft)
    return out
