"""CUDA graphs for the lean runtime's dense forwards: the draft's rounds and plain decode steps.

A small model's decode step on a GPU is mostly kernel launches: dozens of small kernels per
layer, each a few microseconds of CPU work to launch and less to run. A CUDA graph records one
forward's launches once and replays them with one call, as vLLM, SGLang and gpt-fast do for
decoding. A graph replays fixed shapes at fixed addresses, so each is captured for one bucket:

* rows: the cache rows 0..R-1 the forward covers, R a power of two up to the cache's rows
  (and the cache's rows themselves). A batch whose highest row is r runs in the smallest R > r;
  the rows it does not use are padding (``ForwardBatch.arrays``: they write the cache's padding
  slot, the last one, which nothing reads, and see only it);
* tokens per row: 1, 2, 4, 8 or 16 (a draft round's frontier, a plain step's one root);
* keys: always the whole cache row, masked past each row's own. Attention over padding keys
  costs memory bandwidth (little at these cache lengths); it keeps one graph per (rows,
  tokens) instead of one per context length as well.

The graph computes every padded position's logits; the positions a caller selects are
gathered after the replay. Forwards that fit no bucket (a prefill, a draft round catching up
on many tokens) run eagerly. Verification of trees (``LeanModel.forward_tree``, ragged, its
shapes different every step) is not captured: a plain step, where no request has a tree, goes
through the dense forward and so through a graph (``TargetWorker.verify``).

All graphs of a model share one memory pool, and they are captured up front
(``capture_all``, at engine build, reported): the first request never pays for a capture.
Capturing writes only the padding slots, so it may happen with requests in the cache.

``emulate=True`` runs the same buckets, padding and static buffers eagerly, on any device:
the CPU tests prove that the padded forward gives the unpadded one's results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

TOKEN_BUCKETS = (1, 2, 4, 8, 16)
CHOICES = ("auto", "on", "off")


class GraphsUnavailable(ValueError):
    """``--cuda-graphs on`` where graphs cannot run; the message says why."""


def wanted(choice: str, device: torch.device, tensor_parallel: int = 1) -> bool:
    """Whether to capture graphs: ``auto`` on a CUDA device in one process, ``on`` insists
    (an error where they cannot run), ``off`` never."""
    if choice not in CHOICES:
        raise GraphsUnavailable(f"--cuda-graphs must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "off":
        return False
    reason = None
    if device.type != "cuda":
        reason = f"CUDA graphs need a CUDA device, the models are on {device}"
    elif tensor_parallel > 1:
        reason = "CUDA graphs are captured in one process only; tensor parallelism runs eagerly"
    if reason is not None and choice == "on":
        raise GraphsUnavailable(reason)
    return reason is None


def row_buckets(num_rows: int) -> tuple[int, ...]:
    """Powers of two below the cache's rows, then the rows themselves."""
    out, r = [], 1
    while r < num_rows:
        out.append(r)
        r *= 2
    return (*out, num_rows)


@dataclass
class _Graph:
    ids: torch.Tensor  # (3, R, T) int64: tokens, positions, slots
    mask: torch.Tensor  # (R, T, K) bool
    logits: torch.Tensor | None  # (R, T, V): the graph's output (None while emulated)
    graph: object | None  # torch.cuda.CUDAGraph, or None when emulated


@dataclass
class GraphStats:
    captured: int = 0
    capture_s: float = 0.0
    replays: int = 0
    eager: int = 0  # dense forwards that fit no bucket

    def as_dict(self) -> dict:
        return {"captured": self.captured, "capture_s": round(self.capture_s, 3),
                "replays": self.replays, "eager": self.eager}


class DecodeGraphs:
    """One model's graphs, by (rows, tokens) bucket; see the module docstring."""

    def __init__(self, model, emulate: bool = False) -> None:
        if not emulate and model.device.type != "cuda":
            raise GraphsUnavailable(f"CUDA graphs need a CUDA device, the model is on {model.device}")
        self.model, self.emulate = model, emulate
        self.num_keys = model.cache.max_len
        self.pad_slot = model.cache.max_len - 1  # ``cache_headroom``'s padding slot
        self.rows = row_buckets(model.cache.max_batch)
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.pool = None if emulate else torch.cuda.graph_pool_handle()
        self.stats = GraphStats()

    def bucket(self, last_row: int, num_tokens: int) -> tuple[int, int] | None:
        """The smallest (rows, tokens) bucket holding rows 0..last_row and ``num_tokens`` per
        row, or None."""
        rows = next((r for r in self.rows if r > last_row), None)
        tokens = next((t for t in TOKEN_BUCKETS if t >= num_tokens), None)
        return None if rows is None or tokens is None else (rows, tokens)

    def capture_all(self, max_tokens: int = TOKEN_BUCKETS[-1]) -> float:
        """Capture every bucket up to ``max_tokens`` per row; returns the seconds it took."""
        started = time.perf_counter()
        for rows in self.rows:
            for tokens in TOKEN_BUCKETS:
                if tokens <= max_tokens:
                    self._graph(rows, tokens)
        return time.perf_counter() - started

    def _graph(self, rows: int, tokens: int) -> _Graph:
        key = (rows, tokens)
        if key in self.graphs:
            return self.graphs[key]
        started = time.perf_counter()
        device = self.model.device
        ids = torch.zeros((3, rows, tokens), dtype=torch.int64, device=device)
        ids[2] = self.pad_slot  # capture writes the padding slot only
        mask = torch.zeros((rows, tokens, self.num_keys), dtype=torch.bool, device=device)
        mask[..., self.pad_slot] = True
        g = _Graph(ids, mask, None, None)
        if not self.emulate:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up off the capture: workspaces, kernel choice
                for _ in range(2):
                    self._run(g)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                g.logits = self._run(g)
            g.graph = graph
            torch.cuda.synchronize(device)
        self.graphs[key] = g
        self.stats.captured += 1
        self.stats.capture_s += time.perf_counter() - started
        return g

    def _run(self, g: _Graph) -> torch.Tensor:
        return self.model.forward(g.ids[0], g.ids[1], g.ids[2], g.mask, self.num_keys, 0)

    def forward(self, batch, select) -> torch.Tensor | None:
        """Logits (N, V) for ``select``'s (cache row, column) pairs of ``batch`` (a
        ``ForwardBatch``), by replaying its bucket's graph; None when no bucket holds it."""
        last_row = batch.first_row + len(batch.rows) - 1
        key = self.bucket(last_row, batch.num_tokens)
        if key is None or batch.num_keys > self.num_keys:
            self.stats.eager += 1
            return None
        rows, tokens = key
        g = self._graph(rows, tokens)
        host_ids = np.empty((3, rows, tokens), dtype=np.int64)
        host_ids[0], host_ids[1], host_ids[2], host_mask = batch.arrays((0, rows), tokens, self.num_keys, self.pad_slot)
        g.ids.copy_(torch.from_numpy(host_ids))
        g.mask.copy_(torch.from_numpy(host_mask))
        if self.emulate:
            logits = self._run(g)
        else:
            g.graph.replay()
            logits = g.logits
        pairs = np.asarray(select, dtype=np.int64).reshape(-1, 2)
        flat = torch.from_numpy(pairs[:, 0] * tokens + pairs[:, 1]).to(logits.device)
        self.stats.replays += 1
        # A gather copies: the next replay may overwrite the graph's output, not this.
        return logits.reshape(rows * tokens, -1).index_select(0, flat)
