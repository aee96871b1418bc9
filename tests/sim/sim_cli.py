"""Shared by the ``test_trust_sim_*`` files: a scenario on the demo pair (fast to simulate), a
request trace, ``specgrove sim`` on the command line, and a check that a command printed one
error line and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

from specgrove.cli import main

ROOT = Path(__file__).resolve().parents[2]


def write_trace(path: Path, rows: list[tuple[float, int, int]]) -> Path:
    path.write_text("".join(json.dumps({"arrival_s": t, "prompt_tokens": p, "output_tokens": o}) + "\n"
                            for t, p, o in rows))
    return path


def demo_toml(tmp_path: Path, body: str = "", name: str = "s.toml") -> Path:
    """The demo pair on one CPU "GPU": fast to simulate."""
    path = tmp_path / name
    path.write_text('seed = 1\nduration_s = 2.0\n' + body + '''
[cluster]
gpu = "cpu-2core"
num_nodes = 1
gpus_per_node = 2
intra_link = "shared-memory"

[models]
pair = "demo"

[deployment]
max_batch = 8
''' + ('' if "[workload]" in body else '''
[workload]
rate = 5.0
prompt = { dist = "uniform", low = 16, high = 64 }
output = { dist = "fixed", value = 16 }
''') + '''
[policies]
tree = "chain"
tree_options = { length = 3 }
tree_budget = 3
''')
    return path


def sim(*argv) -> int:
    return main(["sim", *map(str, argv), "--no-progress"])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err
