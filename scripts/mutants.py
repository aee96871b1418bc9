#!/usr/bin/env python3
"""Mutation harness: do the tests fail when the code is wrong?

Each mutation is a small named patch (a file, an exact piece of its text, what replaces it)
that plants one semantic bug, and the tests meant to catch it. For every mutation the harness:

1. copies the working tree (tracked files and untracked ones git does not ignore) into a
   temporary directory -- the repository itself is never modified;
2. runs the mutation's tests on the unmutated copy (the baseline, once per distinct test
   list), which must pass: otherwise "caught" could mean "was failing anyway";
3. applies the patch to the copy, runs the same tests, and reports the mutation *caught* (a
   test failed, or the run hung past the timeout) or *MISSED* (everything passed);
4. restores the file.

Tests run with the copy as working directory and first on PYTHONPATH, so they import the
copy's ``specgrove``, not the editable install's; a one-line pytest plugin checks that in
every run and aborts it otherwise, and the harness checks it once up front.

A patch whose text is not found exactly once fails the whole harness before anything runs,
so mutations cannot rot silently when the code under them changes.

    python scripts/mutants.py              # every mutation; exit 1 if any is missed
    python scripts/mutants.py --list       # names and what each plants
    python scripts/mutants.py --only NAME  # one (or a comma-separated few)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900  # per pytest run; a mutant that hangs this long counts as caught


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
        "        cost = profile.cost_for(s.policies.tree)\n",
        "        pass\n",
        ("tests/calibration/test_calibration.py::test_round_trip_reproduces_throughput_and_tpot",),
    ),
    Mutation(
        "tabulated-ignores-domain",
        "tabulated acceptance draws every domain's rows from the first domain's table",
        "specgrove/sim/acceptance.py",
        "drawn[mask] = self._rows(d, n)[self._indices(rng, int(mask.sum()))]",
        "drawn[mask] = self._rows(0, n)[self._indices(rng, int(mask.sum()))]",
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
        "        if not self.idle:\n            self.worker.prefill(seqs)",
        "        self.worker.prefill(seqs)",
        ("tests/executor/test_engine.py::test_plain_decoding_leaves_the_draft_alone",),
    ),

]

GUARD = '''\
"""Loaded by the mutation harness in every pytest run: the copy's specgrove, or nothing."""
import os

import pytest


def pytest_configure(config):
    import specgrove

    copy = os.path.realpath(os.environ["MUTANTS_COPY"])
    where = os.path.realpath(specgrove.__file__)
    if not where.startswith(copy + os.sep):
        raise pytest.UsageError(f"mutation harness: specgrove imported from {where}, not from the copy {copy}")
'''


def check_patches(mutations: list[Mutation], root: Path) -> list[str]:
    """Problems with the patches themselves: text not found exactly once, unknown files."""
    problems, names = [], set()
    for m in mutations:
        if m.name in names:
            problems.append(f"{m.name}: duplicate name")
        names.add(m.name)
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: {m.file} holds the patched text {count} times, not once:\n"
                            + textwrap.indent(m.old, "    | "))
        if m.old == m.new:
            problems.append(f"{m.name}: the patch changes nothing")
        for test in m.tests:
            if not (root / test.split("::")[0]).is_file():
                problems.append(f"{m.name}: test file {test.split('::')[0]} does not exist")
    return problems


def copy_tree(dst: Path) -> None:
    """The working tree as git sees it: tracked files and untracked, unignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree but still tracked
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


class Runner:
    def __init__(self, copy: Path, guard_dir: Path) -> None:
        self.copy = copy
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(copy), str(guard_dir)])
        self.env["MUTANTS_COPY"] = str(copy)
        self.env.pop("PYTEST_ADDOPTS", None)

    def where_specgrove(self) -> str:
        out = subprocess.run([sys.executable, "-c", "import specgrove; print(specgrove.__file__)"],
                             cwd=self.copy, env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def pytest(self, tests: tuple[str, ...], stop_first: bool) -> tuple[str, float, str]:
        """('passed' | 'failed' | 'timeout', seconds, output)."""
        shutil.rmtree(self.copy / ".hypothesis", ignore_errors=True)  # no examples carried over
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutants_guard",
               "-rfE", "--no-header", *(["-x"] if stop_first else []), *tests]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.copy, env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return "timeout", time.perf_counter() - start, out
        took = time.perf_counter() - start
        output = proc.stdout + proc.stderr
        if proc.returncode == 0:
            return "passed", took, output
        if proc.returncode in (1,):  # tests failed (2: interrupted/usage, 3: internal, 4: usage, 5: none)
            return "failed", took, output
        return f"error (pytest exit {proc.returncode})", took, output


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", help="run only these mutations (comma-separated names)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = parser.parse_args(argv)

    problems = check_patches(MUTATIONS, ROOT)
    if problems:
        print("mutations that no longer apply (update them to the code):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:38s} {m.file}\n{'':38s} {m.what}\n{'':38s} tests: {', '.join(m.tests)}")
        return 0
    chosen = MUTATIONS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {m.name for m in MUTATIONS})
        if unknown:
            print(f"unknown mutation(s): {', '.join(unknown)}; see --list", file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in wanted]

    tmp = Path(tempfile.mkdtemp(prefix="specgrove-mutants-"))
    copy, guard_dir = tmp / "repo", tmp / "guard"
    guard_dir.mkdir()
    (guard_dir / "mutants_guard.py").write_text(GUARD)
    start = time.perf_counter()
    results = []
    try:
        copy_tree(copy)
        runner = Runner(copy, guard_dir)
        where = runner.where_specgrove()
        if not os.path.realpath(where).startswith(os.path.realpath(copy) + os.sep):
            print(f"the copy's tests would import specgrove from {where}, not from {copy}", file=sys.stderr)
            return 2
        print(f"copy: {copy} (specgrove imported from {where})")
        print(f"{'mutation':38s} {'result':9s} {'baseline':>9s} {'mutant':>8s}  first failing test")
        baselines: dict[tuple[str, ...], tuple[str, float, str]] = {}
        for m in chosen:
            if m.tests not in baselines:
                baselines[m.tests] = runner.pytest(m.tests, stop_first=False)
            base_status, base_s, base_out = baselines[m.tests]
            base_col = f"{base_s:8.1f}s" if m is next(x for x in chosen if x.tests == m.tests) else "  (same)"
            if base_status != "passed":
                results.append((m, "ERROR", base_s, 0.0, f"baseline {base_status}"))
                print(f"{m.name:38s} {'ERROR':9s} {base_col:>9s} {'':>8s}  baseline {base_status} on the unmutated copy:")
                print(textwrap.indent(base_out[-3000:], "    | "))
                continue
            path = copy / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            try:
                status, took, out = runner.pytest(m.tests, stop_first=True)
            finally:
                path.write_text(original)
            if status == "failed":
                verdict, by = "caught", first_failure(out)
            elif status == "timeout":
                verdict, by = "caught", f"(hung past {TIMEOUT_S}s)"
            elif status == "passed":
                verdict, by = "MISSED", "every test passed"
            else:
                verdict, by = "ERROR", status
            results.append((m, verdict, base_s, took, by))
            print(f"{m.name:38s} {verdict:9s} {base_col:>9s} {took:7.1f}s  {by}", flush=True)
            if verdict == "ERROR":
                print(textwrap.indent(out[-3000:], "    | "))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    caught = sum(1 for r in results if r[1] == "caught")
    print(f"\n{caught} of {len(chosen)} mutations caught in {time.perf_counter() - start:.0f}s "
          f"({sum(len(m.tests) for m in chosen)} test selections, {len(baselines)} baselines)")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
