"""The mutations ``scripts/mutants.py`` plants: each a named patch (a file, an exact piece of
its text, what replaces it), what bug it stands for, and the tests meant to catch it.

Add one here when a test is written to catch a bug class; ``tests/core/test_mutants_apply.py``
checks in CI that every patch still applies (its text is in its file exactly once).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


SAMPLING = "tests/executor/test_engine_sampling.py"

MUTATIONS = [
    # ---- the five of the original audit -------------------------------------------------
    Mutation(
        "residual-not-renormalised",
        "after a rejection, the residual max(p - q, 0) is used without dividing by its mass",
        "specgrove/executor/verify.py",
        "return r / total if total > 0 else p",
        "return r if total > 0 else p",
        (f"{SAMPLING}::test_joint_law_of_tokens_two_and_three", f"{SAMPLING}::test_every_token_follows_its_history_law"),
    ),
    Mutation(
        "roofline-ignores-context",
        "the roofline forward time ignores the cached context (no KV reads, no attention FLOPs)",
        "specgrove/sim/costmodel.py",
        "        per_token, per_attn, weights, per_kv, comm_fixed, comm_per_token = self._coef[which]\n",
        "        per_token, per_attn, weights, per_kv, comm_fixed, comm_per_token = self._coef[which]\n"
        "        c = 0  # MUTANT\n",
        ("tests/sim/test_costmodel.py",),
    ),
    Mutation(
        "top-p-ignored",
        "a request's top-p is dropped when its tokens are drawn and verified",
        "specgrove/executor/sampling.py",
        "return warp_probs(logits, self.temperature, self.top_p)",
        "return warp_probs(logits, self.temperature)",
        (f"{SAMPLING}::test_joint_law_of_tokens_two_and_three",),
    ),
    Mutation(
        "greedy-accepts-rejected-child",
        "greedy verification accepts the first child when no child matches the target argmax",
        "specgrove/executor/verify.py",
        "nxt = next((c for c in kids[node] if tokens[c] == want), None)",
        "nxt = next((c for c in kids[node] if tokens[c] == want), kids[node][0] if kids[node] else None)",
        ("tests/executor/test_verify.py::test_greedy_speculation_equals_target_greedy",),
    ),
    Mutation(
        "kv-compaction-row-0-only",
        "accepted nodes' target K/V is compacted onto the prefix only in cache row 0",
        "specgrove/executor/target_worker.py",
        "            if node != j:  # already in place",
        "            if node != j and seq.row == 0:  # already in place",
        # The sampling test alone: the greedy tests caught this before; sampling did not.
        (f"{SAMPLING}::test_tokens_after_a_compaction_follow_the_target",),
    ),
    # ---- the list ------------------------------------------------------------------
    Mutation(
        "draft-not-warped",
        "the draft proposes from its plain softmax instead of the request's warped law",
        "specgrove/executor/draft_worker.py",
        "p, i = setting.probs(part).topk(k, dim=-1)",
        "p, i = torch.softmax(part.double(), dim=-1).topk(k, dim=-1)",
        (f"{SAMPLING}::test_draft_proposes_from_each_requests_warped_law",),
    ),
    Mutation(
        "tree-position-by-index",
        "a tree node's position id is prefix + its index + 1 instead of prefix + its depth",
        "specgrove/packing.py",
        "positions[q0 + 1 : q1] = prefix[r] + depths(tree.parents)",
        "positions[q0 + 1 : q1] = prefix[r] + np.arange(1, q1 - q0)",
        ("tests/core/test_packing.py", "tests/executor/test_engine.py::test_greedy_equals_target_greedy[dynamic-4]"),
    ),
    Mutation(
        "ancestor-mask-leaks-sibling",
        "a tree node also attends to the sibling listed just before it",
        "specgrove/tree.py",
        "            mask[i] = mask[p]\n        mask[i, i] = True",
        "            mask[i] = mask[p]\n        if i > 0 and parents[i - 1] == p:\n"
        "            mask[i, i - 1] = True  # MUTANT\n        mask[i, i] = True",
        ("tests/core/test_packing.py", "tests/executor/test_runtime.py::test_tree_attention_and_compaction_match_paths"),
    ),
    Mutation(
        "edf-ignores-deadlines",
        "the earliest-deadline-first scheduler treats every deadline as infinite",
        "specgrove/policies/scheduler.py",
        "deadline = math.inf if request.deadline_s is None else request.deadline_s",
        "deadline = math.inf",
        ("tests/sim/test_policies.py::test_scheduler_orders", "tests/executor/test_scheduling.py"),
    ),
    Mutation(
        "power-of-two-ignores-load",
        "the power-of-two router takes the first of its two samples, whatever their load",
        "specgrove/policies/router.py",
        "return _argmin([loads[int(i)] for i in picks], lambda l: l.outstanding_tokens)",
        "return _argmin([loads[int(i)] for i in picks], lambda l: 0)",
        ("tests/sim/test_policies.py::test_power_of_two_takes_the_less_loaded_of_its_two_samples",),
    ),
    Mutation(
        "allreduce-dropped",
        "the tensor-parallel all-reduce term is left out of the target forward time",
        "specgrove/sim/costmodel.py",
        "(compute if compute > memory else memory) + comm_fixed + comm_per_token * t",
        "(compute if compute > memory else memory)",
        ("tests/sim/test_costmodel.py",),
    ),
    Mutation(
        "acceptance-ignores-domain",
        "every request's tree is verified with the first domain's synthetic draft",
        "specgrove/sim/acceptance.py",
        "self.drafts[domains[i]]",
        "self.drafts[0]",
        ("tests/sim/test_acceptance_model.py",),
    ),
    Mutation(
        "preemption-loses-request",
        "a preempted request is dropped instead of re-queued",
        "specgrove/sim/replica.py",
        "self.waiting.append(running[i])  # recomputed on readmission",
        "pass  # MUTANT: recomputed on readmission",
        ("tests/sim/test_properties.py::test_preemption_keeps_every_request_and_memory_bounded",),
    ),
    # ---- more, for the gaps the new tests close ------------------------------------------------
    Mutation(
        "preemption-overcommits-memory",
        "preemption only starts at twice the KV capacity",
        "specgrove/sim/replica.py",
        "while len(b) > 1 and int(self._need().sum()) > self.setup.kv_capacity_tokens:",
        "while len(b) > 1 and int(self._need().sum()) > 2 * self.setup.kv_capacity_tokens:",
        ("tests/sim/test_properties.py::test_preemption_keeps_every_request_and_memory_bounded",),
    ),
    Mutation(
        "temperature-ignored",
        "a request's temperature is dropped when its tokens are drawn and verified",
        "specgrove/executor/sampling.py",
        "return warp_probs(logits, self.temperature, self.top_p)",
        "return warp_probs(logits, 1.0, self.top_p)",
        (f"{SAMPLING}::test_joint_law_of_tokens_two_and_three",),
    ),
    Mutation(
        "sibling-acceptance-not-renormalised",
        "the synthetic acceptance of siblings is not renormalised when it sums past 1",
        "specgrove/sim/acceptance.py",
        "return c / total if total > 1.0 else c",
        "return c",
        ("tests/sim/test_acceptance_model.py",),
    ),
    Mutation(
        "tabulated-ignores-node-cap",
        "tabulated acceptance gives every request the full tree budget, whatever the node cap",
        "specgrove/sim/acceptance.py",
        "share = min(self.exact.total_budget(n) / max(n, 1), self.exact.budget)",
        "share = self.exact.budget",
        ("tests/sim/test_properties.py::test_exact_and_tabulated_agree_where_the_node_cap_binds",),
    ),
    Mutation(
        "tabulated-table-grows-with-share",
        "a tabulated table for a share grows its candidates with the share, not the full budget "
        "(the bug the capped-roofline test found: far less draft work than exact mode)",
        "specgrove/sim/acceptance.py",
        "lambda scores, _: [budget] * len(scores), self.budget, budget * n, contexts, draft,",
        "lambda scores, _: [budget] * len(scores), budget, budget * n, contexts, draft,",
        ("tests/sim/test_properties.py::test_exact_and_tabulated_agree_where_the_node_cap_binds_with_the_roofline",),
    ),
    Mutation(
        "calibrated-profile-ignored",
        "a scenario's calibration profile is read but the roofline keeps running",
        "specgrove/sim/build.py",
        "        cost = profile.cost_for(s.policies.tree).scaled(s.calibration.time_scale)\n",
        "        pass\n",
        ("tests/calibration/test_calibration.py::test_round_trip_reproduces_throughput_and_tpot",),
    ),
    Mutation(
        "tabulated-ignores-domain",
        "tabulated acceptance draws every domain's rows from the first domain's table",
        "specgrove/sim/acceptance.py",
        "return self._rows(domain, n)[self._indices(rng, len(generated))]",
        "return self._rows(0, n)[self._indices(rng, len(generated))]",
        ("tests/sim/test_acceptance_model.py::test_tabulated_draws_each_domain_from_its_own_table",),
    ),
    Mutation(
        "verify-forgets-roots",
        "the target forward is charged for the tree nodes but not the requests' roots",
        "specgrove/sim/planner.py",
        "tree_tokens = num_nodes + num_dec",
        "tree_tokens = num_nodes",
        ("tests/sim/test_properties.py::test_md1_mean_wait_with_ar_and_a_fixed_step_time",
         "tests/sim/test_golden_batched.py"),
    ),
    Mutation(
        "draft-cost-ignores-context",
        "draft rounds are charged as if the decoding requests had no cached context",
        "specgrove/sim/planner.py",
        "draft_s += count * cost.draft_step_s(num_dec, tokens, ctx)",
        "draft_s += count * cost.draft_step_s(num_dec, tokens, 0)",
        ("tests/sim/test_golden_batched.py",),
    ),
    Mutation(
        "rank-acceptance-drops-rank-0",
        "Sequoia's measured rank acceptance never counts the draft's top-1 proposal",
        "specgrove/executor/measure.py",
        "hits = np.bincount(hit_rank[hit_rank >= 0], minlength=num_ranks)",
        "hits = np.bincount(hit_rank[hit_rank > 0], minlength=num_ranks)",
        ("tests/executor/test_measure.py",),
    ),
    Mutation(
        "cost-fit-swaps-tokens-and-context",
        "the measured cost model fits the token and context slopes to each other's columns",
        "specgrove/executor/measure.py",
        "rows.append([1.0, w, c])",
        "rows.append([1.0, c, w])",
        ("tests/executor/test_measure.py::test_cost_model_fit_recovers_an_affine_law",),
    ),
    Mutation(
        "eos-not-truncated",
        "tokens after an EOS inside an accepted path are emitted too",
        "specgrove/executor/engine.py",
        "tokens = tokens[: tokens.index(eos) + 1]",
        "tokens = list(tokens)",
        ("tests/executor/test_batching_edges.py::test_eos_inside_an_accepted_path_at_batch_4",),
    ),
    Mutation(
        "emits-past-max-new-tokens",
        "a step's accepted tokens are not cut to what the request has left",
        "specgrove/executor/engine.py",
        "tokens = tokens[: seq.remaining]",
        "tokens = list(tokens)",
        ("tests/executor/test_engine.py::test_other_families",),
    ),
    Mutation(
        "admitted-rows-collide",
        "requests admitted while others run take cache rows from 0 instead of after them",
        "specgrove/executor/engine.py",
        "seq.row = len(self.active) + j",
        "seq.row = j",
        ("tests/executor/test_batching_edges.py::test_requests_added_between_steps",),
    ),
    # ---- session 4: calibration on the executor's own terms ----------------------------------
    Mutation(
        "cost-fit-fits-the-median",
        "the cost fit's Huber threshold shrinks to a hundredth of a sigma: it fits the typical step, not the mean",
        "specgrove/calibration/cost_fit.py",
        "OUTLIER_SIGMAS = 10.0",
        "OUTLIER_SIGMAS = 0.01",
        ("tests/calibration/test_cost_fit.py::test_the_fit_matches_the_mean_under_right_skewed_noise",),
    ),
    Mutation(
        "separate-prefill-ignored",
        "a scenario asks for separate prefill but the replica keeps mixing prompts into the step",
        "specgrove/sim/replica.py",
        "            if self.setup.separate_prefill and mb.batch.num_prefill:",
        "            if False and mb.batch.num_prefill:",
        ("tests/sim/test_golden_batched.py::test_separate_prefill_matches_hand_computation",),
    ),
    Mutation(
        "per-method-cost-ignored",
        "a scenario runs on the pooled cost model although the profile fitted its method's own",
        "specgrove/calibration/profile.py",
        "        return self.cost_by_method.get(method, self.cost)",
        "        return self.cost",
        ("tests/calibration/test_cost_fit.py::test_a_scenario_runs_on_its_methods_cost_and_others_on_the_pooled_one",),
    ),
    Mutation(
        "frontend-latency-dropped",
        "the profile's front-end latency is loaded but never added to the simulated TTFT and E2E",
        "specgrove/sim/metrics.py",
        '"ttft_s": r.first_token_s - r.arrival_s + r.frontend_s',
        '"ttft_s": r.first_token_s - r.arrival_s',
        ("tests/calibration/test_cost_fit.py::test_the_simulator_adds_the_front_end_latency_to_ttft_and_e2e",),
    ),
    Mutation(
        "ar-prefills-the-draft",
        "plain decoding still prefills every prompt into a draft it never asks",
        "specgrove/executor/draft_side.py",
        "        if self.idle:\n            return\n        if self.policy.lazy_draft:",
        "        if self.policy.lazy_draft:",
        ("tests/executor/test_engine.py::test_plain_decoding_leaves_the_draft_alone",),
    ),
    # ---- session 5: the packed GEMM, plain-step short paths, probes ----------------------
    Mutation(
        "packed-gemm-for-one-row",
        "a one-token product takes the packed weight too (slower for small matrices, and a second rounding path)",
        "specgrove/executor/runtime/gemm.py",
        "x.numel() >= PACK_MIN_ROWS * x.shape[-1]",
        "x.numel() >= 1",
        ("tests/executor/test_gemm.py::test_one_row_takes_f_linear_and_several_take_the_packed_weight",),
    ),
    Mutation(
        "lone-root-mask-ignores-own-bit",
        "the plain-step short path lets a query see its own slot whatever its bit says",
        "specgrove/kernels/tree_attention.py",
        "mask = ((j < 0) | ((j == 0) & own))[:, None, None, :]",
        "mask = ((j < 0) | (j == 0))[:, None, None, :]",
        ("tests/kernels/test_tree_attention.py::test_lone_roots_take_the_short_path_to_the_definition",),
    ),
    Mutation(
        "lone-root-position-off-by-one",
        "the plain-step layout puts the root one position past its prefix",
        "specgrove/kernels/tree_layout.py",
        "        return TreeLayout(prefix, prefix, rows.long(), bitmask, query_starts, prefix_lens, rows, max_len)",
        "        return TreeLayout(prefix + 1, prefix, rows.long(), bitmask, query_starts, prefix_lens, rows, max_len)",
        ("tests/kernels/test_tree_layout.py::test_lone_roots_take_the_short_path_to_the_same_layout",),
    ),
    Mutation(
        "probe-teaches-the-draft-fit",
        "a probe's one-request draft rounds are fitted as if they were the whole batch's",
        "specgrove/policies/dynamic.py",
        "self.cost_model.observe(dataclasses.replace(timing, round_widths=()) if self._probe else timing)",
        "self.cost_model.observe(timing)",
        ("tests/policies/test_load_adaptive.py::test_a_probe_measures_how_far_off_the_model_is_for_its_shape",
         "tests/executor/test_load_adaptive_engine.py::test_a_probe_drafts_over_its_own_cache_row_and_does_not_teach_the_draft_fit"),
    ),
    # ---- session 6: a lazy draft, catch-up pricing, the exploration budget ------------------
    Mutation(
        "eager-draft-prefill",
        "dynamic-cost prefills every prompt into the draft at admission, used or not",
        "specgrove/executor/draft_side.py",
        "        if self.policy.lazy_draft:",
        "        if False:",
        ("tests/executor/test_load_adaptive_engine.py::test_the_draft_caches_a_prompt_only_when_the_policy_first_speculates_on_it",),
    ),
    Mutation(
        "probe-catch-up-priced-as-the-shape",
        "a probe's catch-up (the probed prompt) counts as the shape's own cost (its slowness)",
        "specgrove/policies/dynamic.py",
        "            x = (rounds, rounds, sum(timing.round_widths) + timing.catch_up_tokens, rounds * ctx / n,",
        "            x = (rounds, rounds, sum(timing.round_widths), rounds * ctx / n,",
        ("tests/policies/test_load_adaptive.py::"
         "test_a_whole_batch_step_s_catch_up_counts_in_the_shape_s_slowness_a_probe_s_does_not",),
    ),
    Mutation(
        "explorations-ignore-their-cost",
        "an exploration that lost time does not delay the next one",
        "specgrove/policies/dynamic.py",
        "        due = self._run >= self._patience and self._debt_s <= 0.0",
        "        due = self._run >= self._patience",
        ("tests/policies/test_load_adaptive.py::test_an_exploration_that_lost_time_waits_for_its_share_of_the_time",),
    ),
    Mutation(
        "first-step-outlier-sticks",
        "an option's measured time is an exponential average from its first step",
        "specgrove/policies/dynamic.py",
        "            w = max(0.1, 1.0 / self._measured_n[option])",
        "            w = 0.1",
        ("tests/policies/test_load_adaptive.py::test_one_slow_first_step_does_not_stand_for_an_option_s_next_ten",),
    ),
    Mutation(
        "lookup-matches-itself",
        "the n-gram index records the context's own last n-gram, so a match can be the suffix itself",
        "specgrove/policies/lookup.py",
        "            toks.append(int(tok))\n",
        "            toks.append(int(tok))\n"
        "            self._after[tuple(toks[len(toks) - 1:])] = len(toks) - 1  # MUTANT\n",
        ("tests/policies/test_lookup.py::test_the_index_finds_what_a_scan_finds",),
    ),
    Mutation(
        "lookup-keeps-whole-matches",
        "dynamic-cost verifies a whole match whatever its tokens' chances and prices",
        "specgrove/policies/dynamic.py",
        "        while keep < len(scores) and scores[keep] > floor:  # scores fall with depth",
        "        while keep < len(scores):",
        ("tests/policies/test_lookup.py::test_dynamic_cost_keeps_the_part_of_a_match_that_pays_at_the_margin",),
    ),
    Mutation(
        "lookup-learning-ignores-mismatches",
        "a match's tokens after the first mismatch with the emitted ones are still counted",
        "specgrove/policies/lookup.py",
        "                if tok != real:\n                    break\n",
        "                if tok != real:\n                    continue\n",
        ("tests/policies/test_lookup.py::test_every_step_teaches_lookup_its_acceptance_from_the_emitted_tokens",),
    ),
    Mutation(
        "sure-proposals-accepted-too-often",
        "a deterministic proposal (a lookup chain's token) is taken as drawn with chance 1/2: accepted with 2 p(x)",
        "specgrove/executor/verify.py",
        "                q = torch.zeros_like(p)\n                q[x] = 1.0\n",
        "                q = torch.zeros_like(p)\n                q[x] = 0.5\n",
        ("tests/executor/test_lookup_engine.py::test_sampled_tokens_follow_the_target_law",),
    ),
    Mutation(
        "calibration-fits-lookup-chains-as-draft-trees",
        "calibration's draft fit reads prompt-lookup chains as the draft's trees",
        "specgrove/calibration/acceptance_fit.py",
        "        if not share.parents or not share.scores or share.lookup_order >= 0:  # a lookup chain: not the draft's",
        "        if not share.parents or not share.scores:",
        ("tests/calibration/test_calibration.py::test_recovers_prompt_lookup_s_orders_and_acceptance",),
    ),
    Mutation(
        "switching-ignores-the-draft-backlog",
        "a switch to a draft shape is priced without the tokens the draft must first catch up on",
        "specgrove/policies/dynamic.py",
        "            step_s += catch_up_s / self.explore_every",
        "            step_s += 0.0 * catch_up_s",
        ("tests/policies/test_load_adaptive.py::test_what_the_draft_has_yet_to_see_makes_a_switch_to_a_draft_shape_dearer",),
    ),
    Mutation(
        "one-probe-makes-a-verdict",
        "online, a shape seen on one request's tree may stand as the whole batch's verdict",
        "specgrove/policies/dynamic.py",
        "        trust = self.trust_requests if online and n > 1 else 1",
        "        trust = 1",
        ("tests/policies/test_load_adaptive.py::test_a_shape_stands_as_the_verdict_only_after_trust_requests_trees",),
    ),
    Mutation(
        "whole-batch-catch-up-priced-away",
        "a whole-batch draft step's catch-up is priced with it, so recurring catch-ups never slow the shape",
        "specgrove/policies/dynamic.py",
        "        # A probe's catch-up (the probed request's prompt, under the lazy draft) is priced\n",
        "        if x is not None and not self._probe:\n"
        "            x = (*x[:2], x[2] + timing.catch_up_tokens, *x[3:])\n",
        ("tests/policies/test_load_adaptive.py::"
         "test_a_whole_batch_step_s_catch_up_counts_in_the_shape_s_slowness_a_probe_s_does_not",),
    ),
    Mutation(
        "merged-match-never-raises-a-draft-node",
        "a lookup token that repeats a draft proposal leaves that node at the draft's lower score",
        "specgrove/policies/lookup.py",
        "        elif score > cum[at]:",
        "        elif False:",
        ("tests/policies/test_lookup.py::test_golden_merge_of_a_chain_into_a_draft_tree",),
    ),
    Mutation(
        "dynamic-lookup-drops-the-match",
        "dynamic-lookup verifies the draft's tree alone, its match never merged",
        "specgrove/policies/hybrid.py",
        "        if not order or not len(tokens):",
        "        if True:",
        ("tests/policies/test_lookup.py::test_dynamic_lookup_merges_each_request_s_match_into_its_draft_tree",),
    ),
    Mutation(
        "draft-rank-never-observes-a-step",
        "the draft rank's policy, which makes the step's choices, never hears how the step went",
        "specgrove/executor/parallel/remote_draft.py",
        "            self.drafter.observe_step(timing)",
        "            pass",
        ("tests/executor/test_lookup_engine.py::"
         "test_dynamic_cost_on_a_separate_draft_learns_from_the_steps_and_speculates",),
    ),
    Mutation(
        "graph-padding-rows-write-a-real-slot",
        "a CUDA graph's window rows outside the batch write slot 0 of their cache row, not the padding slot",
        "specgrove/executor/forward_batch.py",
        "                slots[b], mask[b, :, pad_slot] = pad_slot, True",
        "                slots[b], mask[b, :, 0] = 0, True",
        ("tests/executor/test_graphs.py::"
         "test_a_padded_bucket_gives_the_eager_logits_and_leaves_other_rows_alone",),
    ),
    Mutation(
        "graph-output-read-at-the-wrong-column",
        "the logits a caller selects are read from the graph's output as if it had one token per row",
        "specgrove/executor/runtime/graphs.py",
        "        flat = torch.from_numpy(pairs[:, 0] * tokens + pairs[:, 1]).to(logits.device)",
        "        flat = torch.from_numpy(pairs[:, 0] + pairs[:, 1]).to(logits.device)",
        ("tests/executor/test_graphs.py::"
         "test_a_padded_bucket_gives_the_eager_logits_and_leaves_other_rows_alone",),
    ),
    Mutation(
        "simulated-lookup-ignores-context",
        "the simulator draws every request's lookup match from the overall shares, whatever its context length",
        "specgrove/sim/lookup.py",
        "        elif self.orders_by_context and contexts is not None:",
        "        elif False:",
        ("tests/policies/test_lookup.py::test_the_simulated_lookup_draws_orders_by_context_length",
         "tests/calibration/test_calibration.py::"
         "test_recovers_lookup_s_order_shares_by_context_length_and_chain_lengths"),
    ),
    Mutation(
        "simulated-lookup-chains-always-full",
        "every simulated match offers the policy's full chain, however few tokens followed it",
        "specgrove/sim/acceptance.py",
        "            lookup = lambda i, k: (list(range(-1, -min(k, held[i]) - 1, -1)), orders[i])",
        "            lookup = lambda i, k: (list(range(-1, -k - 1, -1)), orders[i])",
        ("tests/calibration/test_calibration.py::"
         "test_recovers_lookup_s_order_shares_by_context_length_and_chain_lengths",),
    ),
    Mutation(
        "tabulated-ignores-output-bins",
        "tabulated mode draws every request's row from the pooled rows, however much of its output it had cached",
        "specgrove/sim/acceptance.py",
        "        if domain not in self.by_generated:",
        "        if True:",
        ("tests/calibration/test_calibration.py::"
         "test_tabulated_mode_draws_each_request_s_row_from_its_bin_of_output_cached",),
    ),
    Mutation(
        "calibration-keys-requests-by-id",
        "calibration takes a request id seen in an earlier merged run for the same request",
        "specgrove/calibration/acceptance_fit.py",
        "first = seen[0] if seen is not None and share.context_tokens == seen[1] + seen[2] else share.context_tokens",
        "first = seen[0] if seen is not None else share.context_tokens",
        ("tests/calibration/test_calibration.py::test_calibrate_follows_each_request_across_merged_runs",),
    ),
    Mutation(
        "fitted-prefill-ignored",
        "a prefill prices as a step's target forward even when the profile fitted prefill terms",
        "specgrove/cost.py",
        "        if self.prefill_base_s is None:",
        "        if True:",
        ("tests/calibration/test_calibration.py::test_recovers_separate_prefill_and_admission_terms",),
    ),
    Mutation(
        "admission-host-work-not-charged",
        "the simulator skips the fitted host work before a separate prefill",
        "specgrove/sim/replica.py",
        "        if before_s > 0:  # host work taking them in",
        "        if False:  # host work taking them in",
        ("tests/calibration/test_calibration.py::test_recovers_separate_prefill_and_admission_terms",),
    ),
    Mutation(
        "simulated-lookup-ignores-own-output",
        "the simulator draws lookup matches by context even where it has shares by the request's own output",
        "specgrove/sim/lookup.py",
        "        if self.orders_by_generated and generated is not None:",
        "        if False:",
        ("tests/policies/test_lookup.py::test_the_simulated_lookup_draws_orders_by_own_output_cached_before_context",
         "tests/calibration/test_calibration.py::test_recovers_lookup_s_order_shares_by_own_output_cached"),
    ),
    Mutation(
        "time-scale-ignored",
        "the scenario's calibration.time_scale is read but the fitted times run unscaled",
        "specgrove/sim/build.py",
        "profile.cost_for(s.policies.tree).scaled(s.calibration.time_scale)",
        "profile.cost_for(s.policies.tree)",
        ("tests/calibration/test_calibration.py::test_time_scale_scales_every_fitted_time",),
    ),
]
