"""The simulated prompt lookup: which n-gram match each request finds per step, how many
tokens it offers, and how many of them the target accepts (``SyntheticLookup``, used by the
acceptance model's exact mode)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticLookup:
    """The simulated prompt lookup (scenario section ``[acceptance.lookup]``; a calibration
    profile's ``lookup`` fit): ``orders[n - 1]`` is the chance that a step's longest match has
    order n (what is left: no match), ``accept[n - 1][j]`` the chance that a chain from an
    order-n match has its token at depth j accepted, given the tokens above it were (the last
    value goes on for deeper tokens). The defaults are illustrative, of the order the demo
    pair measures on code (its preset holds its fit); other text repeats itself less.

    A longer context has more to repeat: on the demo pair's serving traces a request with under
    48 cached tokens found a match at 42% of its steps, one past 192 at 86%. With
    ``context_edges`` (increasing token counts, cutting contexts into one more bin than edges),
    ``orders_by_context[b]`` replaces ``orders`` for a request whose context is in bin b, so a
    workload of shorter or longer requests than the calibration's gets its own mix of matches.
    What drives it is the request's own output: the model repeats what it already wrote (on
    the same traces, by output tokens cached, 1.19 tokens a step over the first 8 and 2.62 past
    58, whatever the prompt's length). With ``generated_edges`` (output tokens cached) and
    ``orders_by_generated``, which ``calibrate`` fits, those shares are drawn instead.

    A chain holds only the tokens that followed the match in the context: a recent match has
    few. With ``lengths``, ``lengths[n - 1][k - 1]`` is the chance that an order-n match offers
    exactly k tokens (the policy takes at most its own length); without, every match offers
    the policy's full length. On the demo pair's serving traces 41% of order-3 chains held 2
    tokens of the 4 asked for."""

    orders: tuple[float, ...] = (0.35, 0.05, 0.2)
    accept: tuple[tuple[float, ...], ...] = ((0.3, 0.7, 0.65, 0.6), (0.55, 0.5, 0.35, 0.3), (0.95, 0.95, 0.9, 0.75, 0.6))
    context_edges: tuple[int, ...] = ()
    orders_by_context: tuple[tuple[float, ...], ...] = ()
    lengths: tuple[tuple[float, ...], ...] = ()
    generated_edges: tuple[int, ...] = ()
    orders_by_generated: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        for shares in (self.orders, *self.orders_by_context, *self.orders_by_generated):
            if not shares or any(p < 0 for p in shares) or sum(shares) > 1 + 1e-9:
                raise ValueError(f"lookup orders must be chances summing to at most 1, got {list(shares)}")
        if len(self.accept) != len(self.orders) or any(not a or any(not 0 <= p <= 1 for p in a) for a in self.accept):
            raise ValueError("lookup accept needs, per order, a non-empty list of chances in [0, 1]")
        for name, edges, rows in (("context", list(self.context_edges), self.orders_by_context),
                                  ("generated", list(self.generated_edges), self.orders_by_generated)):
            if not (rows or edges):
                continue
            if len(rows) != len(edges) + 1 or edges != sorted(set(edges)) or edges[0] <= 0:
                raise ValueError(f"lookup orders_by_{name} needs one row per bin: increasing positive "
                                 f"{name}_edges and one more row than edges (got {len(edges)} edges, {len(rows)} rows)")
            if any(len(row) != len(self.orders) for row in rows):
                raise ValueError(f"lookup orders_by_{name} rows need {len(self.orders)} chances each, as orders")
        if self.lengths and (len(self.lengths) != len(self.orders) or any(
                not row or any(p < 0 for p in row) or abs(sum(row) - 1) > 1e-3 for row in self.lengths)):
            raise ValueError("lookup lengths need, per order, chances of 1, 2, ... tokens summing to 1")

    def draw_lengths(self, orders, cap: int, rng: np.random.Generator) -> list[int]:
        """Tokens each request's chain holds (``orders``: each one's match order, 0 for none),
        at most ``cap``; ``cap`` for every match without ``lengths``."""
        if not self.lengths:
            return [cap if o else 0 for o in orders]
        u = rng.random(len(orders))
        cums = [np.cumsum(row) for row in self.lengths]
        return [min(int(np.searchsorted(cums[o - 1], x, side="right")) + 1, len(cums[o - 1]), cap) if o else 0
                for o, x in zip(orders, u)]

    def draw_orders(self, n: int, rng: np.random.Generator, contexts=None, generated=None) -> np.ndarray:
        """Each of ``n`` requests' match order this step (0: none): by its bin of output cached
        when ``generated`` (per request) is given and the shares depend on it, else by its
        context's bin when ``contexts`` (cached tokens per request) are, else the overall."""
        u = rng.random(n)
        binned = None
        if self.orders_by_generated and generated is not None:
            binned = self.generated_edges, self.orders_by_generated, generated
        elif self.orders_by_context and contexts is not None:
            binned = self.context_edges, self.orders_by_context, contexts
        if binned is not None:
            edges, rows, values = binned
            bins = np.searchsorted(edges, np.asarray(values), side="right")
            cum = np.cumsum(np.asarray(rows, dtype=float), axis=1)[bins]  # (n, orders)
            drawn = (u[:, None] >= cum).sum(axis=1) + 1
        else:
            drawn = np.searchsorted(np.cumsum(self.orders), u, side="right") + 1
        return np.where(drawn > len(self.orders), 0, drawn)

    def accepted(self, order: int, length: int, rng: np.random.Generator) -> int:
        """How many of a ``length``-token chain from an order-``order`` match are accepted."""
        chances = self.accept[order - 1]
        for j in range(length):
            if rng.random() >= chances[min(j, len(chances) - 1)]:
                return j
        return length
