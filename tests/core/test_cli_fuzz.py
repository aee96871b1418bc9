"""Fuzz the torch-free commands' arguments: whatever flags and values come, ``specgrove`` answers
with exit 0, 1 (a run that reports its own failure) or 2 (one line), never a traceback, and in
bounded time."""

import io
import time
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specgrove.cli import main

SCENARIO = '''seed = 1
duration_s = 1.0
[cluster]
gpu = "cpu-2core"
gpus_per_node = 1
intra_link = "shared-memory"
[models]
pair = "demo"
[deployment]
max_batch = 4
[workload]
rate = 4.0
prompt = { dist = "fixed", value = 16 }
output = { dist = "fixed", value = 8 }
[policies]
tree = "chain"
'''

COMMANDS = ["sim", "sweep", "capacity", "presets", "policies"]
TOKENS = ["--seed", "-1", "0", "7", "nan", "inf", "1e309", "-0", "", "x", "--out", "OUT", "--overwrite",
          "--vary", "workload.rate=1,2", "workload.rate=", "policies.tree=chain,static", "nope=1",
          "--template", "--json", "--kind", "gpus", "pairs", "--slo", "ttft_p99=0.5", "ttft_p99=abc", "e2e_p99=-1",
          "--max-requests", "--processes", "1", "--no-progress", "--no-plots", "--policies", "chain", "bogus",
          "--tolerance", "0.5", "--low", "--high", "SCENARIO", "SCENARIO", "--trace", "TRACE", "--help"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(st.sampled_from(TOKENS), max_size=7))
def test_any_arguments_exit_cleanly(tmp_path, command, tokens):
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    argv = [command] + [{"SCENARIO": str(scenario), "OUT": str(tmp_path / "out"),
                         "TRACE": str(tmp_path / "t.jsonl")}.get(t, t) for t in tokens]
    started = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # --help exits 0 through argparse
        code = exc.code
    assert code in (0, 1, 2), (argv, code, err.getvalue()[-500:])
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue()[-2000:])
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) >= 1
    assert time.monotonic() - started < 120, argv
