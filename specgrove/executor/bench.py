"""The executor benchmark: every method on the same prompts, interleaved, after a warm-up.

For each batch size, each repeat runs every method once in turn (so drift hits all methods
alike) over the whole prompt set with continuous batching; medians over repeats are reported,
with speed-ups as ratios to ``ar``'s median. ``hf-assisted`` is transformers' own assisted
generation on the same pair (batch 1 only), the peer to beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from specgrove.executor.engine import EngineConfig
from specgrove.executor.loading import ModelPair
from specgrove.executor.methods import applicable_knobs, method_options
from specgrove.executor.parallel.placement import PairSource, Placement
from specgrove.executor.parallel.replica import open_replica
from specgrove.jsonl import read_jsonl
from specgrove.trace import TraceWriter, summarize

HF_ASSISTED = "hf-assisted"


def split_variant(name: str, default_batch_budget: str) -> tuple[str, str]:
    """``"dynamic+greedy-global"`` -> ("dynamic", "greedy-global"): a method may carry its own
    batch-budget policy, so both splits of one method are compared in one interleaved run."""
    tree, _, batch_budget = name.partition("+")
    return tree, batch_budget or default_batch_budget


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and line."""


def load_prompts(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {str(path)!r} does not exist")
    prompts = []
    for where, item in read_jsonl(path, "prompt file", PromptFileError):
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            raise PromptFileError(f"{where}: each line needs a non-empty string field 'text'")
        prompts.append({"name": item.get("name", f"line-{where.rsplit(':', 1)[1]}"),
                        "domain": item.get("domain", "default"), "text": item["text"]})
    if not prompts:
        raise PromptFileError(f"prompt file {str(path)!r} holds no prompts")
    return prompts


@dataclass
class RunResult:
    method: str
    batch_size: int
    repeat: int
    stats: dict
    outputs: list[list[int]]


def run_engine(pair: ModelPair, method: str, options: dict, prompt_ids: list[list[int]], batch_size: int,
               max_new_tokens: int, budget: int, batch_budget: str, trace: TraceWriter,
               placement: Placement | None = None, source: PairSource | None = None,
               kernels: str = "auto", gemm: str = "auto", cuda_graphs: str = "auto") -> tuple[dict, list[list[int]]]:
    """One run on a fresh engine (on ``placement``'s ranks, started before the clock and
    stopped after it); the stats add the draft wire's traffic when the draft is separate."""
    config = EngineConfig(method=method, budget=budget, batch_budget=batch_budget, max_batch=batch_size,
                          kernels=kernels, gemm=gemm, cuda_graphs=cuda_graphs)
    replica = open_replica(pair, source or PairSource(), placement or Placement(), config, options,
                           on_trace=trace.record, threads=(source.threads if source else None) or 1)
    try:
        engine = replica.engine
        first = len(trace.steps)
        started = time.perf_counter()
        ids = [engine.add_request(p, max_new_tokens) for p in prompt_ids]
        out = engine.run()
        wall = time.perf_counter() - started
        traffic = replica.traffic
    finally:
        replica.close()
    outputs = [out[i] for i in ids]
    stats = summarize(trace.steps[first:], sum(map(len, outputs)), wall)
    graph_stats = engine.graph_stats()
    if graph_stats is not None:  # captured when the engine was built, before the clock started
        stats["cuda_graphs"] = graph_stats
    if traffic is not None:
        stats["wire"] = traffic
    return stats, outputs


def run_hf_assisted(pair: ModelPair, prompt_ids: list[list[int]], max_new_tokens: int) -> tuple[dict, list[list[int]]]:
    """transformers' assisted generation, one prompt at a time; counts target forwards."""
    calls = [0]
    hook = pair.target.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    outputs = []
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for p in prompt_ids:
                ids = torch.tensor([p], device=pair.target.device)
                gen = pair.target.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=pair.draft,
                                           do_sample=False, max_new_tokens=max_new_tokens,
                                           min_new_tokens=max_new_tokens, pad_token_id=pair.tokenizer.eos_token_id)
                outputs.append(gen[0, len(p):].tolist())
    finally:
        hook.remove()
    wall = time.perf_counter() - started
    tokens = sum(map(len, outputs))
    # Each prompt's prefill is one forward that emits the first token, as in our engine.
    steps = calls[0] - len(prompt_ids)
    return {"tokens": tokens, "steps": steps, "target_forwards": calls[0],
            "tau": (tokens - len(prompt_ids)) / steps if steps else 0.0, "tokens_per_s": tokens / wall,
            "wall_s": wall, "mean_tree_size": float("nan"), "draft_ms": float("nan"),
            "verify_ms": float("nan")}, outputs


def run_bench(pair: ModelPair, methods: list[str], prompts: list[dict], batch_sizes: list[int],
              max_new_tokens: int, budget: int, repeats: int, batch_budget: str = "uniform",
              trace_path: str | None = None, progress: Callable[[str], None] | None = None,
              placement: Placement | None = None, source: PairSource | None = None,
              knobs: dict[str, int | None] | None = None, kernels: str = "auto",
              gemm: str = "auto", cuda_graphs: str = "auto") -> list[RunResult]:
    """Every method at every batch size, ``repeats`` times interleaved after a warm-up.
    ``knobs`` (``--topk``, ``--depth``) set the tree options of the methods that take them."""
    prompt_ids = [pair.tokenizer(p["text"])["input_ids"] for p in prompts]
    measurement_text = "\n".join(p["text"] for p in prompts)
    trees = {m: split_variant(m, batch_budget) for m in methods if m != HF_ASSISTED}
    options = {t: method_options(t, pair, measurement_text, knobs=applicable_knobs(t, knobs or {}))
               for t, _ in set(trees.values())}
    results: list[RunResult] = []
    with TraceWriter(trace_path) as trace:
        for batch_size in batch_sizes:
            runnable = [m for m in methods if m != HF_ASSISTED or batch_size == 1]
            # Warm-up: one short pass of every method, not recorded.
            for m in runnable:
                if m == HF_ASSISTED:
                    run_hf_assisted(pair, prompt_ids[:1], 8)
                else:
                    tree, split = trees[m]
                    run_engine(pair, tree, options[tree], prompt_ids[:batch_size], batch_size, 8, budget, split,
                               TraceWriter(None), placement, source, kernels, gemm, cuda_graphs)
            for rep in range(repeats):
                for m in runnable:
                    trace.labels = {"method": m, "max_batch": batch_size, "repeat": rep}
                    if m == HF_ASSISTED:
                        stats, outs = run_hf_assisted(pair, prompt_ids, max_new_tokens)
                    else:
                        tree, split = trees[m]
                        stats, outs = run_engine(pair, tree, options[tree], prompt_ids, batch_size, max_new_tokens,
                                                 budget, split, trace, placement, source, kernels, gemm,
                                                 cuda_graphs)
                    results.append(RunResult(m, batch_size, rep, stats, outs))
                    if progress:
                        progress(f"batch {batch_size} {m} rep {rep}: {stats['tokens_per_s']:.1f} tok/s, tau {stats['tau']:.2f}")
    return results


# Repeats of one method whose tokens/s differ by more than this (max/min - 1) get a warning.
SPREAD_WARNING = 0.25


def aggregate(results: list[RunResult]) -> list[dict]:
    """Median tokens/s and tau per (batch size, method); speed-up as a ratio of medians; the
    spread of tokens/s over repeats (min, max, max/min - 1; None for a single run)."""
    rows = []
    order = list(dict.fromkeys(r.method for r in results))
    keys = sorted({(r.batch_size, r.method) for r in results}, key=lambda k: (k[0], order.index(k[1])))
    reference = {r.batch_size: r.outputs for r in results if r.method == "ar" and r.repeat == 0}
    for b, m in keys:
        runs = [r for r in results if r.batch_size == b and r.method == m]
        tps = float(np.median([r.stats["tokens_per_s"] for r in runs]))
        row = {"batch_size": b, "method": m, "tokens_per_s": tps,
               "tau": float(np.median([r.stats["tau"] for r in runs])),
               "mean_tree_size": float(np.median([r.stats["mean_tree_size"] for r in runs])),
               "draft_ms_per_step": float(np.median([r.stats["draft_ms"] / max(r.stats["target_forwards"], 1) for r in runs])),
               "verify_ms_per_step": float(np.median([r.stats["verify_ms"] / max(r.stats["target_forwards"], 1) for r in runs])),
               "wall_ms_per_step": float(np.median([1e3 * r.stats["wall_s"] / max(r.stats["target_forwards"], 1) for r in runs])),
               "tokens_per_s_runs": [r.stats["tokens_per_s"] for r in runs]}
        row.update(spread(row["tokens_per_s_runs"]))
        row.update(spec_row(runs))
        wires = [r.stats["wire"] for r in runs if "wire" in r.stats]
        if wires:  # a separate draft: what crossed per step, and how much draft time was hidden
            row["wire_bytes_per_step"] = float(np.median([w["step_bytes_per_step"] for w in wires]))
            row["wire_bytes_per_node"] = float(np.median([w["step_bytes_per_node"] for w in wires]))
            row["overlap_fraction"] = float(np.median([w["overlap_fraction"] for w in wires]))
        graphs = [r.stats["cuda_graphs"] for r in runs if "cuda_graphs" in r.stats]
        if graphs:  # captured at each engine's build, outside the timed run
            row["cuda_graphs"] = {k: float(np.median([g[k] for g in graphs])) for k in graphs[0]}
        if b in reference:
            ref = reference[b]
            row["outputs_equal_ar"] = sum(o == w for o, w in zip(runs[0].outputs, ref))
            row["num_prompts"] = len(ref)
        rows.append(row)
    for row in rows:
        ar = next((r for r in rows if r["batch_size"] == row["batch_size"] and r["method"] == "ar"), None)
        row["speedup_vs_ar"] = row["tokens_per_s"] / ar["tokens_per_s"] if ar else float("nan")
        # The speed-up's range over this method's repeats, against ar's median.
        row["speedup_min"] = row["tokens_per_s_min"] / ar["tokens_per_s"] if ar else float("nan")
        row["speedup_max"] = row["tokens_per_s_max"] / ar["tokens_per_s"] if ar else float("nan")
    return rows


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def spec_row(runs: list[RunResult]) -> dict:
    """The speculative-decoding metrics (``spec_metrics``) of one (batch, method): medians over
    the repeats; acceptance by depth per depth; the accepted-length histogram summed over them.
    Runs without them (hf-assisted) give an empty dict."""
    stats = [r.stats for r in runs if "acceptance_by_depth" in r.stats]
    if not stats:
        return {}
    depth = max(len(s["acceptance_by_depth"]) for s in stats)
    hist = np.zeros(max(len(s["accepted_len_hist"]) for s in stats), dtype=np.int64)
    for s in stats:
        hist[: len(s["accepted_len_hist"])] += s["accepted_len_hist"]
    row = {"acceptance_by_depth": [_median([s["acceptance_by_depth"][d] if d < len(s["acceptance_by_depth"]) else None
                                            for s in stats]) for d in range(depth)],
           "accepted_len_hist": hist.tolist()}
    for k in ("mean_accepted_len", "draft_acceptance_rate", "draft_ms_per_token", "verify_ms_per_token"):
        row[k] = _median([s.get(k) for s in stats])
    return row


def spread(values: list[float]) -> dict:
    """min, max and relative spread (max/min - 1; None for fewer than two runs)."""
    lo, hi = float(min(values)), float(max(values))
    rel = None if len(values) < 2 else (hi / lo - 1.0 if lo > 0 else float("inf"))
    return {"tokens_per_s_min": lo, "tokens_per_s_max": hi, "tokens_per_s_spread": rel}


def spread_warnings(rows: list[dict], limit: float = SPREAD_WARNING) -> list[str]:
    """One line per row whose repeats disagree by more than ``limit``."""
    return [f"batch {r['batch_size']} {r['method']}: tokens/s over {len(r['tokens_per_s_runs'])} repeats ranges "
            f"{r['tokens_per_s_min']:.1f}-{r['tokens_per_s_max']:.1f} ({100 * r['tokens_per_s_spread']:.1f}% apart, "
            f"over {100 * limit:.0f}%): the host is noisy, do not trust small differences"
            for r in rows if r["tokens_per_s_spread"] is not None and r["tokens_per_s_spread"] > limit]
