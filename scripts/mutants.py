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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutations import MUTATIONS, Mutation  # noqa: E402

TIMEOUT_S = 900  # per pytest run; a mutant that hangs this long counts as caught



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
