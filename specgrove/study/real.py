"""Real runs: the demo pair on this machine, through the executor's bench machinery.

Greedy decoding (temperature 0) runs ``executor.bench.run_bench`` as ``specgrove bench`` does
(a warm-up, then interleaved repeats), and checks every method's outputs against ``ar``'s.
``run_bench`` decodes greedily only, so temperature 1 runs the same engines, prompts and
interleaving with sampling (``run_sampled``): tokens/s and tau are measured, outputs are not
compared (a sampled continuation depends on the method's random draws).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from specgrove.study.settings import Settings


def prompt_set(prompts_dir: Path, domain: str, count: int) -> list[dict]:
    """The first ``count`` prompts of ``DIR/<domain>.jsonl``, cycled when the file has fewer."""
    from specgrove.executor.bench import load_prompts

    prompts = load_prompts(prompts_dir / f"{domain}.jsonl")
    return [prompts[i % len(prompts)] for i in range(count)]


def run_sampled(pair, methods: list[str], prompts: list[dict], batch_sizes: list[int], max_new_tokens: int,
                budget: int, repeats: int, temperature: float, progress: Callable[[str], None] | None = None):
    """``run_bench`` with sampling: a warm-up, then per repeat every method in turn; each
    request's seed depends on the repeat and its position only, so every method sees the
    same seeds."""
    from specgrove.executor.bench import RunResult
    from specgrove.executor.engine import EngineConfig
    from specgrove.executor.methods import method_options
    from specgrove.executor.parallel.placement import PairSource, Placement
    from specgrove.executor.parallel.replica import open_replica
    from specgrove.executor.sampling import SamplingParams
    from specgrove.trace import TraceWriter, summarize

    prompt_ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    text = "\n".join(p["text"] for p in prompts)
    options = {m: method_options(m, pair, text, greedy=False) for m in methods}
    sampling = SamplingParams(temperature=temperature)

    def one(method: str, batch_size: int, ids: list[list[int]], tokens: int, seed: int) -> tuple[dict, list]:
        config = EngineConfig(method=method, budget=budget, max_batch=batch_size, sampling=sampling, seed=seed)
        trace = TraceWriter(None)
        replica = open_replica(pair, PairSource(), Placement(), config, options[method], on_trace=trace.record)
        try:
            started = time.perf_counter()
            rids = [replica.engine.add_request(p, tokens, seed=seed * 1000 + i) for i, p in enumerate(ids)]
            out = replica.engine.run()
            wall = time.perf_counter() - started
        finally:
            replica.close()
        outputs = [out[r] for r in rids]
        return summarize(trace.steps, sum(map(len, outputs)), wall), outputs

    results = []
    for batch_size in batch_sizes:
        for m in methods:  # warm-up, not recorded
            one(m, batch_size, prompt_ids[:batch_size], 8, 0)
        for rep in range(repeats):
            for m in methods:
                stats, outs = one(m, batch_size, prompt_ids, max_new_tokens, rep + 1)
                results.append(RunResult(m, batch_size, rep, stats, outs))
                if progress:
                    progress(f"batch {batch_size} {m} rep {rep}: {stats['tokens_per_s']:.1f} tok/s, tau {stats['tau']:.2f}")
    return results


ROW_KEYS = ("batch_size", "method", "tokens_per_s", "tau", "mean_tree_size", "draft_ms_per_step",
            "verify_ms_per_step", "wall_ms_per_step", "speedup_vs_ar")


def run_real(settings: Settings, prompts_dir: Path, threads: int, log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """Every (domain, temperature) cell: bench rows with the cell's labels, and facts about
    the runs (device, thread count, seconds)."""
    import torch

    from specgrove.executor.bench import aggregate, run_bench
    from specgrove.executor.bench_report import machine
    from specgrove.executor.loading import load_pair

    torch.set_num_threads(threads)
    started = time.perf_counter()
    pair = load_pair()
    rows = []
    for domain in settings.domains:
        prompts = prompt_set(prompts_dir, domain, settings.prompts_per_domain)
        for temperature in settings.temperatures:
            log(f"real runs: {domain} prompts, temperature {temperature:g}")
            args = (pair, list(settings.methods), prompts, list(settings.batch_sizes), settings.max_new_tokens,
                    settings.budget, settings.repeats)
            if temperature == 0:
                results = run_bench(*args)
            else:
                results = run_sampled(*args, temperature=temperature)
            for r in aggregate(results):
                row = {"domain": domain, "temperature": temperature, **{k: r[k] for k in ROW_KEYS},
                       "num_prompts": len(prompts), "repeats": settings.repeats}
                # Greedy outputs must equal ar's token for token; sampled ones are not compared.
                row["outputs_equal_ar"] = (f"{r['outputs_equal_ar']}/{r['num_prompts']}"
                                           if temperature == 0 and "outputs_equal_ar" in r else "")
                rows.append(row)
    info = {"device": machine(), "torch_threads": threads, "seconds": time.perf_counter() - started}
    return rows, info
