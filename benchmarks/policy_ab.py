"""A tree policy against its own code at an earlier git revision, interleaved in one process.

The working tree's ``specgrove/policies/dynamic.py`` and the one at ``--rev`` both run as
``dynamic-cost`` (the old module is loaded from ``git show`` and swapped into the registry for
its runs; everything else, the engine and the cost model included, is today's), next to the
fixed methods, on the bench's prompts: fresh engine per run, a warm-up, then ``--repeats``
rounds with the variants in turn. Medians of tokens/s, ratios to ``ar``'s median, and whether
every greedy output equals ``ar``'s.

    .venv/bin/python benchmarks/policy_ab.py --rev 19168ac [--batch-sizes 1,4,16] [--repeats 3] [--out DIR]

Writes DIR/{policy_ab.json, policy_ab.md} (default benchmarks/results/policy-ab).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

from specgrove import registry
from specgrove.executor.bench import load_prompts, run_engine
from specgrove.executor.loading import load_pair
from specgrove.executor.methods import method_options
from specgrove.trace import TraceWriter

POLICY = "dynamic-cost"
OLD = f"{POLICY}@rev"


def old_policy(rev: str) -> type:
    """``DynamicCost`` as it was at ``rev`` (its ``@register`` lines dropped, so it does not
    replace today's class under the same name)."""
    try:
        src = subprocess.run(["git", "show", f"{rev}:specgrove/policies/dynamic.py"], capture_output=True,
                             text=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"policy_ab: git cannot show specgrove/policies/dynamic.py at {rev!r}: "
                         f"{exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else exc}") from None
    module = types.ModuleType("dynamic_at_rev")
    exec(compile("\n".join(line for line in src.splitlines() if not line.startswith("@register")),
                 f"dynamic.py@{rev}", "exec"), module.__dict__)
    return module.DynamicCost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", required=True, help="git revision of the policy to compare against")
    ap.add_argument("--methods", default="ar,chain", help="fixed methods run alongside (default ar,chain)")
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", default="benchmarks/prompts/code.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/policy-ab")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fixed = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "ar" not in fixed:
        fixed.insert(0, "ar")
    variants = [*fixed, POLICY, OLD]
    today = registry._REGISTRY["tree"][POLICY]
    before = registry.Entry("tree", POLICY, old_policy(args.rev), "")
    pair = load_pair()
    prompts = load_prompts(args.prompts)
    text = "\n".join(p["text"] for p in prompts)
    ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    options = {m: method_options(m, pair, text) for m in (*fixed, POLICY)}

    def run(variant: str, batch: int, prompts_ids: list, tokens: int):
        method = POLICY if variant == OLD else variant
        registry._REGISTRY["tree"][POLICY] = before if variant == OLD else today
        try:
            return run_engine(pair, method, options[method], prompts_ids, batch, tokens, 16, "uniform",
                              TraceWriter(None))
        finally:
            registry._REGISTRY["tree"][POLICY] = today

    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for v in variants:  # warm-up
            run(v, batch, ids[:batch], 8)
        speeds = {v: [] for v in variants}
        outputs = {}
        for rep in range(args.repeats):
            for v in variants:
                stats, out = run(v, batch, ids, 64)
                speeds[v].append(stats["tokens_per_s"])
                outputs[v] = out
                print(f"batch {batch} {v} rep {rep}: {stats['tokens_per_s']:.1f} tok/s", file=sys.stderr, flush=True)
        ar = float(np.median(speeds["ar"]))
        for v in variants:
            med = float(np.median(speeds[v]))
            rows.append({"batch_size": batch, "variant": v, "tokens_per_s": med, "runs": speeds[v],
                         "vs_ar": med / ar, "outputs_equal_ar": outputs[v] == outputs["ar"]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "policy_ab.json").write_text(json.dumps({"rev": args.rev, "repeats": args.repeats,
                                                     "prompts": args.prompts, "rows": rows}, indent=1) + "\n")
    lines = [f"# `{POLICY}` now against `{POLICY}` at `{args.rev}`", "",
             f"Command: `.venv/bin/python benchmarks/policy_ab.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}` "
             f"({len(ids)} prompts of `{args.prompts}`, 64 new tokens each). "
             f"Medians of {args.repeats} interleaved repeats after a warm-up, one process; "
             f"`{OLD}` is the policy's code at that revision on today's engine.", "",
             "| batch | variant | tokens/s | x ar | runs | = ar |", "|---:|---|---:|---:|---|---|"]
    lines += [f"| {r['batch_size']} | {r['variant']} | {r['tokens_per_s']:.1f} | {r['vs_ar']:.3f} | "
              f"{', '.join(f'{x:.0f}' for x in r['runs'])} | {'yes' if r['outputs_equal_ar'] else 'NO'} |" for r in rows]
    (out / "policy_ab.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
