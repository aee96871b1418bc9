"""``specgrove load``: open-loop replay of a timed workload against a running server.

The workload is the simulator's: a JSON-lines arrival trace, or a scenario TOML whose
``[workload]`` section generates arrivals with the same random stream the simulator uses, so
one file drives both worlds. Each request goes out at its arrival time whatever the server is
doing (open loop) and is streamed; its times go into the simulator's own record type, so
``requests.csv`` and ``summary.json`` have the simulator's columns and keys. A request that
fails is recorded as failed, with the reason.

Where the workload gives token counts only, prompts are cut from a prompt file: a window of
exactly ``prompt_tokens`` token ids at a seeded offset in the file's tokenized text, sent as
ids so the server sees that many tokens.
"""

from __future__ import annotations

import asyncio
import json
import math
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from specgrove.jsonl import read_jsonl
from specgrove.sim.metrics import chunk_gaps
from specgrove.sim.records import RequestRecord
from specgrove.sim.workload import Arrival


class LoadError(ValueError):
    """Bad load input (workload, prompt file, tokenizer); the message names it."""


@dataclass
class Outcome:
    """What the client saw of one request (times in seconds since the run started)."""

    arrival_s: float
    prompt_tokens: int
    first_token_s: float = math.nan
    finish_s: float = math.nan
    num_tokens: int = 0
    queued_s: float = math.nan  # server-side: arrival to admission
    num_steps: int = 0
    rejected: bool = False
    error: str = ""
    chunk_s: list[float] = field(default_factory=list)  # when each chunk with text arrived (ITL)


def default_prompt_texts() -> list[str]:
    """Python source from this interpreter's standard library (always there, never trained
    on by the demo pair's held-out split): the fallback prompt pool."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / name).read_text(encoding="utf-8") for name in ("colorsys.py", "string.py", "calendar.py")]


def prompt_texts(path: str | Path | None) -> list[str]:
    if path is None:
        return default_prompt_texts()
    texts = []
    for where, item in read_jsonl(path, "prompt file", LoadError):
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            raise LoadError(f"{where}: each line needs a non-empty string field 'text'")
        texts.append(item["text"])
    if not texts:
        raise LoadError(f"{path}: prompt file holds no prompts")
    return texts


def cut_prompts(arrivals: list[Arrival], pool: list[int], rng: np.random.Generator) -> list[str | list[int]]:
    """Each request's prompt: its own text if the workload has one, else ``prompt_tokens`` ids
    from the pool at a seeded offset (the pool repeats if a prompt is longer than it)."""
    if not pool:
        raise LoadError("the prompt pool is empty after tokenizing")
    out: list[str | list[int]] = []
    for a in arrivals:
        if a.prompt is not None:
            out.append(a.prompt)
            continue
        start = int(rng.integers(len(pool)))
        reps = (start + a.prompt_tokens) // len(pool) + 1
        out.append((pool * reps)[start : start + a.prompt_tokens])
    return out


async def _one(client: httpx.AsyncClient, url: str, body: dict, t0: float, out: Outcome) -> None:
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")
                try:
                    text = json.loads(text)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    pass
                out.rejected = resp.status_code in (429, 503)
                out.error = f"HTTP {resp.status_code}: {text}"[:300]
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    out.error = f"server error: {chunk['error'].get('message')}"[:300]
                    return
                now = time.perf_counter() - t0
                if math.isnan(out.first_token_s):
                    out.first_token_s = now
                if any(c.get("text") for c in chunk.get("choices") or ()):
                    out.chunk_s.append(now)
                times = chunk.get("specgrove")
                if times is not None:
                    out.prompt_tokens = chunk["usage"]["prompt_tokens"]
                    out.num_tokens = times["num_tokens"]
                    out.num_steps = times["num_steps"]
                    out.queued_s = times["queued_s"] if times["queued_s"] is not None else math.nan
            if out.num_tokens == 0:
                out.error = "the stream ended without its final chunk"
                return
            out.finish_s = time.perf_counter() - t0
    except (httpx.HTTPError, OSError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        out.first_token_s = out.finish_s = math.nan


async def replay(url: str, arrivals: list[Arrival], prompts: list, temperature: float, timeout_s: float,
                 progress: bool = True) -> list[Outcome]:
    """Send every request at its arrival time (open loop); returns one outcome per request."""
    from tqdm import tqdm

    outcomes = [Outcome(a.arrival_s, len(p) if isinstance(p, list) else -1) for a, p in zip(arrivals, prompts)]
    bar = tqdm(total=len(arrivals), unit="req", desc="load", disable=not progress, leave=False)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0), limits=limits) as client:
        t0 = time.perf_counter()
        tasks = []

        async def send(i: int) -> None:
            a, out = arrivals[i], outcomes[i]
            body = {"prompt": prompts[i], "max_tokens": a.output_tokens, "temperature": temperature,
                    "stream": True, "ignore_eos": True, "seed": i}
            await _one(client, url, body, t0, out)
            bar.update(1)

        for i, a in enumerate(arrivals):
            delay = t0 + a.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
    bar.close()
    return outcomes


def records(arrivals: list[Arrival], outcomes: list[Outcome]) -> list[RequestRecord]:
    """The simulator's record per request, filled with what was measured."""
    out = []
    for i, (a, o) in enumerate(zip(arrivals, outcomes)):
        done = not o.error and not math.isnan(o.finish_s)
        rec = RequestRecord(i, 0, a.domain, a.arrival_s, o.prompt_tokens if o.prompt_tokens >= 0 else a.prompt_tokens,
                            a.output_tokens if not done else o.num_tokens, rejected=o.rejected, error=o.error)
        if done:
            rec.admitted_s = a.arrival_s + o.queued_s
            rec.first_token_s, rec.finish_s = o.first_token_s, o.finish_s
            rec.decode_steps, rec.decode_tokens = o.num_steps, o.num_tokens - 1
            rec.chunk_gaps_s = tuple(chunk_gaps(o.chunk_s).tolist())
        out.append(rec)
    return out


def stats_table(summary: dict) -> str:
    """The summary as vLLM's ``benchmark_serving`` prints it: request and token throughput
    (output and total), then mean, median and p99 of TTFT, TPOT, ITL and E2E in ms."""
    def ms(value) -> str:
        return "-" if value is None else f"{value * 1e3:.2f}"

    lines = [f"{'Successful requests:':<40}{summary['num_finished']:>12}",
             f"{'Benchmark duration (s):':<40}{summary['span_s']:>12.2f}",
             f"{'Request throughput (req/s):':<40}{summary['throughput_requests_per_s']:>12.2f}",
             f"{'Output token throughput (tok/s):':<40}{summary['output_throughput_tokens_per_s']:>12.2f}",
             f"{'Total token throughput (tok/s):':<40}{summary['total_throughput_tokens_per_s']:>12.2f}"]
    for key, name in (("ttft_s", "Time to First Token"), ("tpot_s", "Time per Output Token (excl. 1st token)"),
                      ("itl_s", "Inter-token Latency"), ("e2e_s", "End-to-end Latency")):
        short = key.split("_")[0].upper()
        p = summary[key]
        lines += [f"{'-' * 15}{name}{'-' * max(52 - 15 - len(name), 3)}",
                  f"{f'Mean {short} (ms):':<40}{ms(p['mean']):>12}",
                  f"{f'Median {short} (ms):':<40}{ms(p['p50']):>12}",
                  f"{f'P99 {short} (ms):':<40}{ms(p['p99']):>12}"]
    return "\n".join(lines)
