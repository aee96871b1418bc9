"""Dynamic trees: ``dynamic`` (EAGLE-2) and ``dynamic-cost`` (budget chosen per step).

EAGLE-2's observation: the draft's cumulative path probability is a good, cheap estimate of a
node's chance of being accepted. So grow where the draft is confident: at each depth expand
the ``frontier`` most probable nodes of the newest layer with the draft's ``topk`` children
each, and at the end keep the ``budget`` best nodes over all depths. Because a child's
cumulative probability never exceeds its parent's, the kept set is closed under ancestors.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np

from specgrove.cost import CostModel, OnlineCostModel
from specgrove.policies.base import ROOT, PartialTree, TreeGrowth, TreePolicy
from specgrove.policies.confidence import ConfidenceMap, as_confidence_map
from specgrove.policies.lookup import LearnsLookup, chain_tree
from specgrove.registry import register
from specgrove.tree import Tree, select_top


@register("tree", "dynamic")
class Dynamic(TreePolicy):
    """EAGLE-2: expand the most probable frontier nodes, keep the global top-budget nodes."""

    def __init__(self, topk: int = 4, frontier: int = 4, max_depth: int = 6,
                 confidence: ConfidenceMap | dict | None = None) -> None:
        for name, value in (("topk", topk), ("frontier", frontier), ("max_depth", max_depth)):
            if value < 1:
                raise ValueError(f"dynamic {name} must be >= 1, got {value}")
        self.topk, self.frontier, self.max_depth = topk, frontier, max_depth
        # Rank by measured acceptance instead of raw draft probability, when given.
        self.confidence = as_confidence_map(confidence)

    def grow(self, budget: int) -> TreeGrowth:
        tree = PartialTree(self.confidence)
        if budget <= 0:
            return tree.freeze()
        layer = [ROOT]
        for _ in range(self.max_depth):
            topk = yield tree.expansion(layer, self.topk)
            new = tree.add_children(layer, topk, [self.topk] * len(layer))
            # Next layer: the most probable new nodes (stable order breaks ties by index).
            cum = np.array([tree.cum[i] for i in new])
            order = np.argsort(-cum, kind="stable")[: self.frontier]
            # A node's descendants score no higher than it does and lose ties to shallower
            # nodes, so a node at or below the budget-th best score can add nothing to the
            # final selection: expanding it would be a wasted draft round.
            floor = np.partition(tree.cum, -budget)[-budget] if len(tree) >= budget else 0.0
            layer = [new[j] for j in order if cum[j] > floor]
            if not layer or not self.worth_another_round([tree.cum[i] for i in layer]):
                break
        return tree.freeze()

    def worth_another_round(self, frontier_scores: list[float]) -> bool:
        """Whether to run one more draft round; EAGLE-2 always does, up to ``max_depth``."""
        return True


def expected_tokens(cum_sorted: np.ndarray) -> np.ndarray:
    """Expected tokens emitted per step for budgets 0..n when the best-first nodes are kept:
    the bonus token plus each kept node's acceptance chance (its cumulative score: the draft
    probability, or the acceptance from the policy's confidence map)."""
    return 1.0 + np.concatenate([[0.0], np.cumsum(cum_sorted)])


@register("tree", "dynamic-cost")
class DynamicCost(LearnsLookup, Dynamic):
    """EAGLE-2 growth with the shape and budget chosen per step to maximise tokens per second.

    Before drafting, the whole batch picks one option: plain decoding (budget 0, no draft
    round) or a speculative shape, a ``tree`` (``topk`` children of the ``frontier`` best nodes
    per round) or a ``chain`` (one child of one node per round: the cheapest verification),
    whichever the cost model says yields the most tokens per second at this batch size and
    context, given the expected tokens, tree size and draft rounds that shape has yielded
    lately. Where the requests' own contexts offer matches (prompt lookup,
    ``specgrove.policies.lookup``), a ``lookup`` step verifies them instead, with no draft
    round, on the steps where their measured chances make it yield more than that choice.
    After growing, each request keeps the tree size that maximises its own tokens per second. An option not chosen is re-tried now and then (after ``explore_every`` steps of
    the verdict, doubling while it stands; the option tried longest ago goes first), as a
    choice's costs and gains are only observed while it runs. In a batch of several requests a
    shape is learnt or re-tried on one request only (a probe; the others decode plainly), in
    turn, so that learning what a wide tree yields costs one tree, not a batch of them.

    With an ``OnlineCostModel`` (the executor's default) the policy also learns from the engine:
    the costs are refitted from its step timings, each shape's expected tokens (from the draft's
    calibrated confidence) are scaled by how many tokens its steps really emitted, and each
    option's predicted step time by how long its steps really took (the model's one overhead
    term cannot tell a speculative step's bookkeeping from a plain step's). With a fixed cost
    model (the simulator's, or a test's) it learns nothing, so both worlds decide alike.
    """

    explore_every = 16
    # Explorations may cost at most this share of the time: after one that lost t seconds
    # against plain decoding (an exploration at batch 16 loses about three plain steps), the
    # next waits for t / explore_share seconds of steps, whatever the step count.
    explore_share = 0.03
    plain_first = 3  # online: plain steps timed before any shape is tried
    lookup_timed_after = 10  # lookup steps run before lookup is timed by its own steps
    trust_requests = 8  # requests' trees a shape is seen on before it may stand as the verdict
    PLAIN = "plain"
    observes_steps = True  # the online cost model and the lookup acceptance learn from them
    lazy_draft = True  # a request decoded plainly throughout never costs a draft forward

    def __init__(
        self,
        cost_model: CostModel | None = None,
        topk: int = 4,
        frontier: int = 4,
        max_depth: int = 6,
        confidence: ConfidenceMap | dict | None = None,
        shapes: tuple[str, ...] | list[str] = ("tree", "chain", "lookup"),
        lookup_length: int = 8,
        lookup_accept: list[list[float]] | None = None,
    ) -> None:
        super().__init__(topk=topk, frontier=frontier, max_depth=max_depth, confidence=confidence)
        if cost_model is None:
            raise ValueError("dynamic-cost needs a cost_model (executor: measured; sim: the scenario's)")
        if lookup_length < 1:
            raise ValueError(f"dynamic-cost lookup_length must be >= 1, got {lookup_length}")
        self.lookup_length = lookup_length if "lookup" in shapes else 0
        # (topk, frontier) of each shape's draft rounds; ``lookup`` runs none (its chain is
        # copied from the request's context, ``specgrove.policies.lookup``).
        widths = {"tree": (topk, frontier), "chain": (1, 1), "lookup": (1, 1)}
        shapes = tuple(shapes)
        if not shapes or any(x not in widths for x in shapes) or len(set(shapes)) != len(shapes):
            raise ValueError(f"dynamic-cost shapes must be distinct names from {', '.join(widths)}, got {list(shapes)}")
        self.cost_model = cost_model
        self.shapes = shapes
        self._widths = {x: widths[x] for x in shapes}  # (topk, frontier) of each shape
        # Per shape, exponential averages of what its steps yielded per request: expected
        # tokens, tree size, draft rounds (None until it ran), and emitted / expected tokens.
        self._stats: dict[str, list[float] | None] = dict.fromkeys(shapes)
        self._seen = dict.fromkeys(shapes, 0)  # requests' trees each shape has been seen on
        # Emitted and expected tokens per request of each shape's steps, as exponential averages:
        # their ratio scales the expectation. (A running mean of per-step ratios would be biased
        # high: a step expected to yield 2.5 that yields 5 weighs more than one expected at 5
        # that yields 2.5 weighs less.)
        self._emitted: dict[str, float | None] = dict.fromkeys(shapes)
        self._expected: dict[str, float | None] = dict.fromkeys(shapes)
        # Per option, exponential averages of its recent steps' measured times and of their
        # cost-model features (what the online model prices: ``_features``), from the first
        # one observed (None before). The current model's price of the average features,
        # against the average measured time, corrects the model's time for that option.
        # Features, not the predictions made at the time: the online model refits every few
        # steps, and a ratio to old predictions would correct what the refit already did
        # (plain decoding at batch 16 was once priced at twice its real step so).
        # Started at the first observation, not from 1: an option that runs rarely (it lost)
        # must not keep the raw model's guess for dozens of its steps.
        self._measured_s: dict[str, float | None] = dict.fromkeys((*shapes, self.PLAIN))
        self._measured_x: dict[str, tuple[float, ...] | None] = dict.fromkeys((*shapes, self.PLAIN))
        self._measured_n = dict.fromkeys((*shapes, self.PLAIN), 0)  # steps measured, per option
        self._step_x: tuple[float, ...] | None = None  # this step's features, when its option is known
        self._step_gains: list[float] = []  # this step's expected tokens, per request
        self._options = (*shapes, self.PLAIN)
        self._last_tried = dict.fromkeys(self._options, -1)
        self._now = 0
        self._choice, self._run, self._patience = shapes[0], 0, self.explore_every
        self._shape: str | None = shapes[0]  # this step's shape (None: plain)
        self._probe = False  # this step tries its shape on one request only
        self._probes = 0  # probes run so far (they take the batch's requests in turn)
        self._exploring = False  # this step runs an option other than the verdict, to learn
        # Seconds of steps still to run before the next exploration (online only): what the
        # last one lost against plain decoding, over ``explore_share``.
        self._debt_s = 0.0
        # Prompt lookup's acceptance per match order and depth, learnt from every step.
        self.start_lookup("dynamic-cost", lookup_length, lookup_accept)
        self._lookup_valued = False  # this step's matches were weighed (and some token kept)
        self._backlog = 0  # tokens the draft has yet to see over the batch (the executor says)
        # This step's price of a lookup token: (what a plain step spends per token, what one
        # more token adds to the verification forward).
        self._token_value = (0.0, 0.0)

    def see_backlog(self, tokens: int) -> None:
        self._backlog = tokens

    def step_budget(self, budget: int, context_tokens) -> int:
        self._step_gains = []
        if budget <= 0:
            return budget
        n, ctx = len(context_tokens), int(sum(context_tokens))
        # The verdict is kept among the draft's shapes and plain decoding. Lookup, valued every
        # step from that step's matches (the simulator gives none), is never explored, only
        # taken over the verdict on the steps where its matches yield more: its value moves
        # from step to step, and counted as a change of verdict it kept resetting the patience
        # of the explorations (a wide tree explored 14 times in a 700-step run).
        standing = tuple(o for o in self._options if o != "lookup")
        # A shape on probation (seen on fewer than ``trust_requests`` requests' trees) is only
        # run as an exploration, never as the verdict: one probe's tree is one sample, and at
        # batch 16 a chain probe whose six nodes the draft was sure of made the whole batch
        # chain next step (63 ms, catching up on 1,500 tokens, against 6 ms plain steps).
        # Online only, and over a batch of several: with a fixed cost model (the simulator's)
        # nothing paces explorations, and at batch 1 a shape's first step is already a whole
        # batch's bet, costing one step if it was a lucky sample.
        online = isinstance(self.cost_model, OnlineCostModel)
        trust = self.trust_requests if online and n > 1 else 1
        unknown = sorted((x for x in self.shapes if x != "lookup" and self._seen[x] < trust),
                         key=lambda x: (self._seen[x] > 0, self._last_tried[x]))
        others = [o for o in standing if o != self._choice]
        # Online, plain decoding is timed first, over a few steps: the shapes are measured
        # against it, and one slow plain step right after a probe once made plain decoding look
        # 1.8x slower than it ran, and a batch of 4 speculate, losing, for 12 steps.
        timing_plain = online and self._measured_n[self.PLAIN] < self.plain_first
        due = self._run >= self._patience and self._debt_s <= 0.0 and bool(others)
        # A shape nothing is known of is tried as soon as the exploration budget allows: the
        # first at once, the next when the time the first lost is paid down (at batch 16 a
        # first probe, catching up on a prompt, costs some five plain steps).
        learn = bool(unknown) and self._debt_s <= 0.0
        exploring = not timing_plain and (learn or due)
        if timing_plain:
            option = self.PLAIN
        elif learn:
            option = unknown[0]  # little known of it yet: run it to learn (the least tried first)
        elif due:  # explore the option tried longest ago, once
            option = min(others, key=self._last_tried.get)
        else:  # among what is known (a shape still to learn waits for the budget)
            option = self._best(n, ctx, tuple(o for o in standing if o not in unknown))
        self._probe = exploring and option != self.PLAIN and len(context_tokens) > 1
        self._exploring = exploring
        if option == self._choice:
            self._run += 1
        elif due:  # an exploration step: the verdict stood so far
            self._run, self._patience = 0, min(self._patience * 2, 16 * self.explore_every)
        else:  # the verdict changed: look again soon
            # The count since the last exploration goes on: a verdict flipping between two
            # shapes must not starve the others of their re-tries (at batch 4 it once kept a
            # stale plain-decoding estimate for 45 steps of losing speculation).
            self._choice, self._run, self._patience = option, self._run + 1, self.explore_every
        self._last_tried[option] = self._now
        self._now += 1
        # (Not while plain decoding is being timed: lookup is priced against it, and taken over
        # it from the first step, it left plain untimed at the model's guess, 40% over.)
        self._lookup_valued = (not timing_plain and bool(self.lookup_length) and self._matches is not None
                               and self._weigh_matches(n, ctx))  # some request keeps a token of its match
        if not exploring and self._lookup_valued and self._rate("lookup", n, ctx) > self._rate(option, n, ctx):
            option = "lookup"
        known = option == self.PLAIN or self._stats[option] is not None
        self._step_x = self._features(option, n, ctx) if known and not self._probe else None
        self._shape = None if option == self.PLAIN else option
        if self._shape is None:
            return 0
        self.topk, self.frontier = self._widths[self._shape]  # this step's growth
        return budget

    def step_lookup(self) -> bool:
        return self._shape == "lookup"

    def _weigh_matches(self, n: int, ctx: int) -> bool:
        """What the lookup option would yield this step, from the matches themselves: each
        request's kept chain (``lookup_tree``) and its expected tokens. Known every step, at no
        draft cost, so lookup never needs exploring. Returns whether any request keeps a token."""
        cm = self.cost_model
        plain_token_s = 1.0 / (n * self._rate(self.PLAIN, n, ctx))
        extra_s = (cm.target_forward_s(n, n + 1, ctx) - cm.target_forward_s(n, n, ctx)) * self.slowness("lookup")
        self._token_value = (plain_token_s, extra_s)
        gain = size = 0.0
        for tokens, order in self._matches:
            scores = self._kept_scores(tokens, order)
            gain += 1.0 + sum(scores)
            size += len(scores)
        count = max(len(self._matches), 1)
        self._stats["lookup"] = [gain / count, size / count, 0.0]
        return size > 0

    def probe_rows(self, num_requests: int) -> list[int] | None:
        if not (self._shape and self._probe):
            return None
        self._probes += 1
        return [self._probes % num_requests]  # the requests in turn, one per probe

    def _step_s(self, option: str, n: int, ctx: int) -> float:
        """The cost model's time for one step of ``option`` over ``n`` requests."""
        cm = self.cost_model
        overhead = cm.step_overhead_s(n)
        if option == self.PLAIN:
            return cm.target_forward_s(n, n, ctx) + overhead
        _, size, rounds = self._stats[option]
        frontier = self._widths[option][1]
        return (rounds * cm.draft_step_s(n, n * frontier, ctx)
                + cm.target_forward_s(n, round(n * (size + 1)), ctx) + overhead)

    def _features(self, option: str, n: int, ctx: int) -> tuple[float, ...]:
        """``_step_s``'s terms as the online model's features, concatenated: the draft rounds'
        [rounds, rounds * n, tokens, rounds * ctx], the target forward's [1, n, tokens, ctx] and
        the host work's [1, n]; the model's time for the step is linear in them. Plain Python
        numbers: the policy prices a few options every step, and numpy's per-call cost on
        10-element vectors would be most of it."""
        if option == self.PLAIN:
            return (0.0, 0.0, 0.0, 0.0, 1.0, n, n, ctx, 1.0, n)
        _, size, rounds = self._stats[option]
        frontier = self._widths[option][1]
        return (rounds, rounds * n, rounds * n * frontier, rounds * ctx,
                1.0, n, round(n * (size + 1)), ctx, 1.0, n)

    def _priced_s(self, x) -> float:
        """The online cost model's current time for features ``x`` (see ``_features``)."""
        cm = self.cost_model
        return sum(map(operator.mul, cm.draft.terms + cm.target.terms + cm.step.terms, x))

    def _rate(self, option: str, n: int, ctx: int) -> float:
        """Expected tokens per second per request of a step of ``option`` (plain: 1 token)."""
        if option == self.PLAIN:
            gain = 1.0
        elif option == "lookup":  # this step's matches, scored by what verification made of such
            gain = self._stats[option][0]
        else:
            gain = self._stats[option][0] * self.realism(option)
        online = isinstance(self.cost_model, OnlineCostModel)  # the same time, priced in one product
        step_s = self._priced_s(self._features(option, n, ctx)) if online else self._step_s(option, n, ctx)
        step_s *= self.slowness(option)
        if self._backlog and option not in (self.PLAIN, "lookup"):
            # Switching to a draft shape first feeds the draft what it has not seen (with the
            # lazy draft, whole prompts), priced as if the shape then ran for
            # ``explore_every`` steps: at batch 16, the first full chain step after lookup and
            # plain steps caught up on fifteen prompts and took 50 ms, seven plain steps.
            cm = self.cost_model
            catch_up_s = cm.draft_step_s(n, n + self._backlog, ctx) - cm.draft_step_s(n, n, ctx)
            step_s += catch_up_s / self.explore_every
        return gain / step_s

    def slowness(self, option: str) -> float:
        """Measured over modelled time of ``option``'s recent steps, the model priced as it
        stands now (1 until observed)."""
        if option == "lookup" and self._measured_n[option] < self.lookup_timed_after:
            # Until lookup has run for a while, it is timed as a plain step with more tokens in
            # the forward, which the model prices. Its first steps pay for forward shapes new to
            # the math library (one cost 6 ms where 3 were due): timed by them alone, it would
            # never run again. Later its own time counts, with what the model cannot price
            # (a batch with trees in it attends in two calls where a plain one needs one).
            option = self.PLAIN
        measured = self._measured_s[option]
        if measured is None:
            return 1.0
        priced = self._priced_s(self._measured_x[option])
        return measured / priced if priced > 0 else 1.0

    def _best(self, n: int, ctx: int, options: tuple[str, ...]) -> str:
        """The option with the highest expected rate (ties: the order of ``shapes``, then plain)."""
        rates = [self._rate(o, n, ctx) for o in options]
        return options[max(range(len(rates)), key=rates.__getitem__)]  # the first of equals

    def observe_step(self, timing) -> None:
        if not isinstance(self.cost_model, OnlineCostModel):
            return
        x = self._step_x
        if self._probe and self._shape is not None:
            # The probe as the model prices it: its rounds over one request, the batch's target
            # forward with the probe's tree in it. Measured against that, the probe tells how
            # far off the model is for this shape before the whole batch bets on it (at batch
            # 16, the first full step of a shape the start-up model underpriced cost as much
            # as ten plain steps).
            rounds, n, ctx = len(timing.round_widths), timing.num_requests, timing.context_tokens
            x = (rounds, rounds, sum(timing.round_widths) + timing.catch_up_tokens, rounds * ctx / n,
                 1.0, n, timing.target_tokens, ctx, 1.0, n)
        # A probe's catch-up (the probed request's prompt, under the lazy draft) is priced
        # with it: it says what the shape costs once it runs, not what switching costs. A
        # whole-batch step's catch-up is not: it counts in the shape's slowness. Interleaved
        # with lookup steps, a chain keeps catching up on what they emitted (50-90 tokens per
        # step at batch 4, 7 ms a step over its 12), and priced as a one-off switching cost,
        # the chain looked 30% faster than it ran and stood as the verdict, losing.
        # A probe's draft rounds run over the probed request's cache row alone (the executor
        # spans only rows with work), not over the batch its timing names: they would teach
        # the draft fit that a batch's rounds cost one request's. Its target forward and host
        # work are the batch's, and are learnt from.
        self.cost_model.observe(dataclasses.replace(timing, round_widths=()) if self._probe else timing)
        option = self._shape or self.PLAIN
        measured = timing.draft_s + timing.verify_s + timing.other_s
        self.learn_lookup(timing)
        self._owe(measured, timing)
        if x is not None:
            # A running mean over the first ten steps, then an exponential average: one slow
            # first step of an option that then runs rarely must not stand for ten of its steps.
            self._measured_n[option] += 1
            w = max(0.1, 1.0 / self._measured_n[option])
            if self._measured_s[option] is None:
                self._measured_s[option], self._measured_x[option] = measured, x
            else:
                self._measured_s[option] += w * (measured - self._measured_s[option])
                self._measured_x[option] = tuple(m + w * (v - m) for m, v in zip(self._measured_x[option], x))
        if self._shape is not None and self._step_gains and timing.emitted_tokens:
            if self._probe:
                # The others decoded plainly, one token each (verdicts are counted before
                # a request's end cuts them): what the probed request emitted is the rest.
                realised = timing.emitted_tokens - (timing.num_requests - 1)
            else:
                realised = timing.emitted_tokens / timing.num_requests
            expected = float(np.mean(self._step_gains))
            x = self._shape
            if self._emitted[x] is None:
                self._emitted[x], self._expected[x] = realised, expected
            else:
                self._emitted[x] += 0.1 * (realised - self._emitted[x])
                self._expected[x] += 0.1 * (expected - self._expected[x])

    def _owe(self, measured: float, timing) -> None:
        """Start the wait after an exploration (what it took beyond the steps of the verdict,
        or plain ones where those are faster, that would have emitted its tokens, over
        ``explore_share``), or pay it down by a step's time. Against the verdict: where lookup
        runs at twice plain decoding's rate, a wide tree explored at plain's rate loses half
        its time, and once counted as losing nothing, explorations took 7% of a run."""
        if not self._exploring:
            self._debt_s -= measured
            return
        n, ctx = timing.num_requests, timing.context_tokens
        standing = [self.PLAIN]
        if self._choice != self.PLAIN and self._stats[self._choice] is not None:
            standing.append(self._choice)
        if self._lookup_valued:  # what this step's matches would have yielded instead
            standing.append("lookup")
        step_s = 1.0 / max(self._rate(o, n, ctx) for o in standing)  # one step's time per token
        lost = measured - timing.emitted_tokens / n * step_s
        self._debt_s = max(lost, 0.0) / self.explore_share

    def realism(self, shape: str) -> float:
        """Emitted over expected tokens of ``shape``'s recent steps (1 until observed)."""
        emitted, expected = self._emitted[shape], self._expected[shape]
        return 1.0 if emitted is None else emitted / expected

    def node_realism(self, shape: str | None) -> float:
        """Accepted over expected-accepted nodes of ``shape``'s recent steps: how far the
        draft's path scores under- or over-state a node's real chance (the bonus token left
        out, as it comes whatever the tree). 1 until observed; kept within [1/4, 4]."""
        if shape is None or self._emitted[shape] is None or not self._expected[shape] > 1.0:
            return 1.0
        return float(np.clip((self._emitted[shape] - 1.0) / (self._expected[shape] - 1.0), 0.25, 4.0))

    def _remember(self, gain: float, size: int, rounds: int) -> None:
        """Exponential averages of what this step's shape has been yielding, per request."""
        self._step_gains.append(gain)
        self._seen[self._shape] += 1
        stats = self._stats[self._shape]
        if stats is None:
            self._stats[self._shape] = [gain, float(size), float(rounds)]
            return
        for i, value in enumerate((gain, size, rounds)):
            stats[i] += 0.1 * (value - stats[i])

    def worth_another_round(self, frontier_scores: list[float]) -> bool:
        """Another round adds at most the frontier's scores in accepted tokens (a child never
        outscores its parent), each worth about one target forward that need not run; stop
        when even that bound does not pay for the draft round. The scores are the draft's
        path probabilities, scaled by how this shape's nodes have really been accepted
        (``node_realism``): a draft that understates its chances (the demo pair's does) would
        otherwise stop its chains after two or three rounds, where four to six pay."""
        accepted = sum(frontier_scores) * self.node_realism(self._shape)
        saved_s = accepted * self.cost_model.target_forward_s(1, 1, 0)
        return saved_s > self.cost_model.draft_step_s(1, len(frontier_scores), 0)

    def best_budget(self, candidates: Tree, budget: int, context_tokens: int = 0) -> int:
        """argmax over b <= budget of E[tokens | b best nodes] / (draft time + verify time)."""
        cum = np.sort(candidates.cum_probs)[::-1][: max(budget, 0)]
        gain = expected_tokens(cum)  # as the draft's scores say (what realism is measured against)
        real_gain = 1.0 + (gain - 1.0) * self.node_realism(self._shape)
        # The draft rounds already ran while growing; their cost is common to every b, but it
        # still dilutes the benefit of a bigger tree, so it belongs in the denominator.
        draft_s = candidates.depth * self.cost_model.draft_step_s(1, self.frontier, context_tokens)
        sizes = np.arange(len(gain))
        verify_s = np.array(
            [self.cost_model.target_forward_s(1, int(b) + 1, context_tokens) for b in sizes]
        )
        best = int(np.argmax(real_gain / (draft_s + verify_s)))
        if len(candidates):  # a speculative step (a plain one has no candidates to learn from)
            self._remember(float(gain[best]), best, candidates.depth)
        return best

    def lookup_scores(self, order: int, length: int) -> list[float]:
        """Each node's chance of acceptance, path included, in a chain of ``length`` tokens
        from a match of ``order``: the product of the measured per-depth acceptances."""
        return self.lookup_acceptance.scores(order, length)

    def _kept_scores(self, tokens: list[int], order: int) -> list[float]:
        """The scores of the longest prefix of a match whose every token pays at the margin:
        its chance of acceptance, valued at what a plain step spends per token at this batch
        size, against what one more token adds to the verification forward (expected accepted
        tokens per unit cost, token by token). A wide batch keeps only its surest matches;
        batch 1, whose forward barely grows with a few more tokens, keeps them all."""
        if not tokens:
            return []
        value_s, extra_s = self._token_value
        floor = extra_s / value_s if value_s > 0 else float("inf")
        scores = self.lookup_scores(order, len(tokens))
        keep = 0
        while keep < len(scores) and scores[keep] > floor:  # scores fall with depth
            keep += 1
        return scores[:keep]

    def lookup_tree(self, tokens: list[int], order: int, context_tokens: int = 0) -> Tree:
        return chain_tree(tokens[: len(self._kept_scores(tokens, order))])

    def select(self, candidates: Tree, budget: int, context_tokens: int = 0) -> Tree:
        return select_top(candidates, self.best_budget(candidates, budget, context_tokens))
