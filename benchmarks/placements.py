"""The executor's placements on the same cores: tokens/s, draft overlap and bytes on the wire.

Variants, each given every core of this machine (2 here) and the same concurrency B (the
deployment's total: a separate draft runs two micro-batches of B/2, two replicas B/2 each):

* ``single``: one process, 2 torch threads (the synchronous engine);
* ``single-1t``: one process, 1 thread (what each rank of the others gets);
* ``separate``: the draft on a rank of its own, two micro-batches in ping-pong (2 x 1 thread);
* ``separate-sync``: the same ranks, one micro-batch (no overlap), to isolate the overlap;
* ``tp2``: target and draft sharded over 2 ranks (2 x 1 thread; gloo all-reduces);
* ``replicas2``: two single-process replicas (1 thread each), requests routed by the
  registered ``least-outstanding`` router.

Greedy ``dynamic`` trees on the demo pair, every prompt at once; each run on a fresh engine
(ranks started before the clock); variants interleaved, repeats after a warm-up, medians.

    .venv/bin/python benchmarks/placements.py [--batch-sizes 4,16] [--repeats 3] [--out DIR]

Writes DIR/{placements.json, placements.md, placements.png} (default
benchmarks/results/placements-cpu).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from specgrove import registry
from specgrove.executor.bench import load_prompts
from specgrove.executor.engine import EngineConfig
from specgrove.executor.loading import load_pair
from specgrove.executor.methods import method_options
from specgrove.executor.parallel.placement import PairSource, Placement
from specgrove.executor.parallel.replica import open_replica
from specgrove.types import Request

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "single": (Placement(), 2),
    "single-1t": (Placement(), 1),
    "separate": (Placement(draft_placement="separate"), 1),
    "separate-sync": (Placement(draft_placement="separate", microbatches=1), 1),
    "tp2": (Placement(tp=2), 1),
    "replicas2": (None, 1),
}


def run_placement(pair, options, config, placement, threads, prompt_ids, max_new, device="cpu"):
    torch.set_num_threads(threads)
    replica = open_replica(pair, PairSource(device=device, threads=threads), placement, config, options,
                           threads=threads)
    try:
        t0 = time.perf_counter()
        ids = [replica.engine.add_request(p, max_new, ignore_eos=True) for p in prompt_ids]
        out = replica.engine.run()
        wall = time.perf_counter() - t0
        traffic = replica.traffic
    finally:
        replica.close()
    return [out[i] for i in ids], wall, traffic


def _replica_worker(conn, method, options, batch, max_new, device):
    torch.set_num_threads(1)
    pair = load_pair(device=device)
    replica = open_replica(pair, PairSource(), Placement(), EngineConfig(method=method, budget=16, max_batch=batch),
                           options)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.recv()  # the start signal
        ids = [replica.engine.add_request(p, max_new, ignore_eos=True) for p in job]
        out = replica.engine.run()
        conn.send([out[i] for i in ids])


class Replicas:
    """Two engine processes; ``run`` routes the prompts with the router policy and times the
    whole batch from the start signal to the last replica's answer."""

    def __init__(self, method, options, batch, max_new, device="cpu", router="least-outstanding"):
        ctx = multiprocessing.get_context("spawn")
        self.router = registry.create("router", router)
        self.conns, self.procs = [], []
        for _ in range(2):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_replica_worker, args=(b, method, options, max(1, batch // 2), max_new, device),
                                  daemon=True)
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        for c in self.conns:
            assert c.recv() == "ready"

    def run(self, prompt_ids, max_new):
        from specgrove.policies.router import ReplicaLoad

        share, outstanding = [[], []], [0, 0]
        order = []
        for p in prompt_ids:
            loads = [ReplicaLoad(i, len(share[i]), outstanding[i]) for i in range(2)]
            i = self.router.route(Request(len(order), len(p), max_new, 0.0), loads)
            share[i].append(p)
            outstanding[i] += max_new
            order.append((i, len(share[i]) - 1))
        for c, job in zip(self.conns, share):
            c.send(job)
        t0 = time.perf_counter()
        for c in self.conns:
            c.send("go")
        answers = [c.recv() for c in self.conns]
        wall = time.perf_counter() - t0
        return [answers[i][j] for i, j in order], wall, None

    def close(self):
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="4,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--method", default="dynamic")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ranks and replicas share one GPU)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/placements-cpu"))
    args = ap.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    pair = load_pair(device=args.device)
    prompts = load_prompts(ROOT / "benchmarks/prompts/code.jsonl")[:16]
    prompt_ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    options = method_options(args.method, pair, "\n".join(p["text"] for p in prompts))
    runs = {(b, v): [] for b in batches for v in VARIANTS}
    equal = {(b, v): True for b in batches for v in VARIANTS}
    bar = tqdm(total=len(batches) * len(VARIANTS) * (args.repeats + 1), desc="placements")
    for b in batches:
        config = EngineConfig(method=args.method, budget=16, max_batch=b)
        replicas = Replicas(args.method, options, b, args.max_new_tokens, args.device)
        reference = None
        for rep in range(-1, args.repeats):  # -1: the warm-up, not recorded
            for name, (placement, threads) in VARIANTS.items():
                n = 4 if rep < 0 else args.max_new_tokens
                if placement is None:
                    torch.set_num_threads(1)
                    outs, wall, traffic = replicas.run(prompt_ids, n)
                else:
                    outs, wall, traffic = run_placement(pair, options, config, placement, threads, prompt_ids, n,
                                                        args.device)
                bar.update(1)
                if rep < 0:
                    continue
                if name == "single" and reference is None:
                    reference = outs
                equal[(b, name)] &= reference is None or outs == reference
                runs[(b, name)].append({"tokens_per_s": sum(map(len, outs)) / wall, "wall_s": wall, "wire": traffic})
                bar.set_postfix_str(f"B={b} {name}: {runs[(b, name)][-1]['tokens_per_s']:.0f} tok/s", refresh=False)
        replicas.close()
    bar.close()
    rows = []
    for (b, name), rs in runs.items():
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        base = statistics.median(r["tokens_per_s"] for r in runs[(b, "single")])
        row = {"batch": b, "variant": name, "tokens_per_s": tps, "vs_single": tps / base,
               "runs": [r["tokens_per_s"] for r in rs], "outputs_equal_single": equal[(b, name)]}
        wires = [r["wire"] for r in rs if r["wire"]]
        if wires:
            for key in ("overlap_fraction", "step_bytes_per_step", "step_bytes_per_node", "step_bytes_per_request_step"):
                row[key] = statistics.median(w[key] for w in wires)
        rows.append(row)
    write(Path(args.out), rows, args)


def write(out: Path, rows: list[dict], args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
               else f"{platform.machine()} CPU, {multiprocessing.cpu_count()} cores") + f", torch {torch.__version__}"
    config = {"method": args.method, "budget": 16, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
              "prompts": "benchmarks/prompts/code.jsonl (16)", "pair": "demo", "machine": machine}
    (out / "placements.json").write_text(json.dumps({"config": config, "rows": rows}, indent=2))
    lines = [f"# Placements on {machine}", "",
             f"Demo pair, greedy `{args.method}` (budget 16), 16 code prompts x {args.max_new_tokens} tokens, all at "
             f"once; B = total concurrency. Medians of {args.repeats} interleaved repeats after a warm-up; "
             "`vs single` = tokens/s over the one-process, 2-thread engine's.", "",
             "| B | variant | tokens/s | vs single | = single | overlap | wire B/step | wire B/node | wire B/request-step |",
             "|---:|---|---:|---:|:---:|---:|---:|---:|---:|"]
    for r in rows:
        wire = (f"{r['overlap_fraction']:.2f} | {r['step_bytes_per_step']:.0f} | {r['step_bytes_per_node']:.1f} | "
                f"{r['step_bytes_per_request_step']:.0f}") if "overlap_fraction" in r else " | | | "
        lines.append(f"| {r['batch']} | {r['variant']} | {r['tokens_per_s']:.0f} | {r['vs_single']:.2f} | "
                     f"{'yes' if r['outputs_equal_single'] else 'NO'} | {wire} |")
    (out / "placements.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(variants)
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(batches))]
        ys = [next(r["tokens_per_s"] for r in rows if r["batch"] == b and r["variant"] == v) for b in batches]
        ax.bar(xs, ys, width, label=v)
    ax.set_xticks(range(len(batches)), [f"B = {b}" for b in batches])
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Placements, demo pair, {machine}", fontsize=9)
    ax.legend(fontsize=8, ncols=3)
    fig.tight_layout()
    fig.savefig(out / "placements.png", dpi=120)
    print((out / "placements.md").read_text())


if __name__ == "__main__":
    main()
