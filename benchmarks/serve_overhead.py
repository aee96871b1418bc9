"""What serving over HTTP costs: the same requests in process and through ``specgrove serve``.

Saturating load: every prompt at once, greedy, at max batch B; tokens/s in process (the
engine's own loop, as ``bench`` runs it) against tokens/s through the server (first request
sent to last token received, SSE streaming, the openai-style client of ``specgrove load``).
Light load: one request at a time; the client's TTFT p50 against the in-process time from
``add_request`` to the first token (prefill). Variants run interleaved after a warm-up;
medians over repeats. The server and the in-process engine use the same torch threads (2).

    .venv/bin/python benchmarks/serve_overhead.py [--method dynamic] [--batch-sizes 4,16] [--repeats 3]

Writes benchmarks/results/serve-cpu/{serve.json, serve.md, serve.png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

import httpx

from specgrove.executor.bench import load_prompts
from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import load_pair
from specgrove.executor.methods import method_options
from specgrove.serve.process import start_server as start
from specgrove.serve.process import stop_server as stop

ROOT = Path(__file__).resolve().parents[1]


def in_process(pair, options, method, prompt_ids, batch, max_tokens):
    engine = build_engine(pair.target, pair.draft, EngineConfig(method=method, max_batch=batch), options)
    t0 = time.perf_counter()
    for p in prompt_ids:
        engine.add_request(p, max_tokens, ignore_eos=True)
    out = engine.run()
    wall = time.perf_counter() - t0
    ttft = [s.first_token_s - s.arrival_s for s in engine.finished.values()]
    return sum(map(len, out.values())) / wall, ttft


def single_ttft(pair, options, method, prompt_ids):
    """Light load in process: one request at a time; add_request to first token."""
    engine = build_engine(pair.target, pair.draft, EngineConfig(method=method, max_batch=1), options)
    times = []
    for p in prompt_ids:
        rid = engine.add_request(p, 2, ignore_eos=True)
        engine.run()
        s = engine.finished.pop(rid)
        times.append(s.first_token_s - s.arrival_s)
    return times


async def over_http(url, prompt_ids, max_tokens, concurrent: bool, stream: bool = True):
    """Tokens/s from the first request sent to the last answer, and each request's TTFT
    (streaming; without streaming, the whole answer's time)."""
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=None)) as client:
        async def one(p):
            body = {"prompt": p, "max_tokens": max_tokens, "temperature": 0, "stream": stream, "ignore_eos": True}
            sent, first, tokens = time.perf_counter(), None, 0
            if not stream:
                resp = await client.post(f"{url}/v1/completions", json=body)
                return time.perf_counter() - sent, resp.json()["usage"]["completion_tokens"]
            async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: {"):
                        first = first or time.perf_counter()
                        if '"specgrove"' in line:
                            tokens = json.loads(line[6:])["specgrove"]["num_tokens"]
            return first - sent, tokens

        t0 = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*[one(p) for p in prompt_ids])
        else:
            results = [await one(p) for p in prompt_ids]
        wall = time.perf_counter() - t0
    return sum(t for _, t in results) / wall, [f for f, _ in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dynamic")
    ap.add_argument("--batch-sizes", default="4,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve-cpu"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    pair = load_pair()
    prompts = load_prompts(ROOT / "benchmarks" / "prompts" / "code.jsonl")
    prompt_ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    options = method_options(args.method, pair, "\n".join(p["text"] for p in prompts))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        # The server gets the same two torch threads; the client is async Python, mostly idle.
        proc, url = start("--method", args.method, "--max-batch", str(batch), "--max-queue", "1024", threads=2)
        try:
            asyncio.run(over_http(url, prompt_ids[:batch], 8, True))  # warm-up, both sides
            in_process(pair, options, args.method, prompt_ids[:batch], batch, 8)
            local, remote, whole = [], [], []
            for _ in range(args.repeats):
                local.append(in_process(pair, options, args.method, prompt_ids, batch, args.max_tokens)[0])
                remote.append(asyncio.run(over_http(url, prompt_ids, args.max_tokens, True))[0])
                whole.append(asyncio.run(over_http(url, prompt_ids, args.max_tokens, True, stream=False))[0])
            row = {"batch_size": batch, "method": args.method, "in_process_tokens_per_s": statistics.median(local),
                   "http_tokens_per_s": statistics.median(remote), "http_nostream_tokens_per_s": statistics.median(whole),
                   "in_process_runs": local, "http_runs": remote, "http_nostream_runs": whole}
            row["http_over_in_process"] = row["http_tokens_per_s"] / row["in_process_tokens_per_s"]
            row["http_nostream_over_in_process"] = row["http_nostream_tokens_per_s"] / row["in_process_tokens_per_s"]
            if batch == min(int(b) for b in args.batch_sizes.split(",")):
                light = prompt_ids[:12]
                row["light_in_process_ttft_p50_s"] = statistics.median(single_ttft(pair, options, args.method, light))
                row["light_http_ttft_p50_s"] = statistics.median(asyncio.run(over_http(url, light, 2, False))[1])
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_runs")}))
        finally:
            stop(proc)
    report = {"machine": f"{platform.machine()} CPU, 2 torch threads", "prompts": "benchmarks/prompts/code.jsonl",
              "num_prompts": len(prompt_ids), "max_tokens": args.max_tokens, "repeats": args.repeats, "rows": rows}
    (out / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Serving overhead: HTTP against in process", "",
             f"{report['machine']}; {len(prompt_ids)} code prompts, {args.max_tokens} tokens each, greedy, "
             f"method `{args.method}`; medians of {args.repeats} interleaved repeats after a warm-up.",
             "Command: `.venv/bin/python benchmarks/serve_overhead.py`", "",
             "| max batch | in process tok/s | HTTP streaming tok/s | ratio | HTTP whole answers tok/s | ratio |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['in_process_tokens_per_s']:.1f} | {r['http_tokens_per_s']:.1f} | "
                     f"{r['http_over_in_process']:.3f} | {r['http_nostream_tokens_per_s']:.1f} | "
                     f"{r['http_nostream_over_in_process']:.3f} |")
    light = next(r for r in rows if "light_http_ttft_p50_s" in r)
    lines += ["", f"Light load (one request at a time): TTFT p50 over HTTP {light['light_http_ttft_p50_s'] * 1e3:.1f} ms, "
                  f"in process (add_request to first token) {light['light_in_process_ttft_p50_s'] * 1e3:.1f} ms."]
    (out / "serve.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(rows))
    ax.bar([x - 0.27 for x in xs], [r["in_process_tokens_per_s"] for r in rows], 0.27, label="in process")
    ax.bar([x for x in xs], [r["http_tokens_per_s"] for r in rows], 0.27, label="HTTP, streaming (SSE)")
    ax.bar([x + 0.27 for x in xs], [r["http_nostream_tokens_per_s"] for r in rows], 0.27, label="HTTP, whole answers")
    ax.set_xticks(list(xs), [f"max batch {r['batch_size']}" for r in rows])
    ax.set_ylabel("tokens/s (median)")
    ax.set_title(f"demo pair, {args.method}, saturating load")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "serve.png", dpi=100)
    print(f"wrote {out}/serve.json, serve.md, serve.png")


if __name__ == "__main__":
    main()
