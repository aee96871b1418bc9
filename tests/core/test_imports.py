"""The layers: policies and the trace format import neither torch nor SimPy, the simulator
no torch, so both worlds (and the dashboard) can use them on a light install."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules, banned", [
    (["specgrove.policies", "specgrove.policies.speculation", "specgrove.policies.synthetic",
      "specgrove.trace", "specgrove.tree", "specgrove.packing", "specgrove.registry", "specgrove.cost"],
     ["torch", "simpy"]),
    (["specgrove.sim", "specgrove.sim.api", "specgrove.commands.sim", "specgrove.commands.sweep"], ["torch"]),
])
def test_layer_imports(modules, banned):
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"bad = [b for b in {banned!r} if b in sys.modules]\nassert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]
