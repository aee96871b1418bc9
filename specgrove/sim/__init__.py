"""The simulator: a SimPy model of GPUs, links and arrivals that runs the registered policies.

Layers (each a module): ``hardware`` and ``models`` (presets), ``costmodel`` (roofline),
``acceptance`` (synthetic draft, exact or tabulated), ``workload`` (arrivals), ``scenario``
and ``build`` (TOML, validated), ``replica``/``planner``/``engine`` (the SimPy model),
``metrics``, and ``api``/``sweep`` (what the CLI and dashboard call). Never imports torch.
"""

from specgrove.sim.api import (  # noqa: F401
    MAX_REQUESTS, Result, SweepError, TooLargeError, Variant, prepare_sweep, run_scenario, run_sweep, sweep,
)
from specgrove.sim.build import load_scenario, parse_scenario  # noqa: F401
from specgrove.sim.scenario import Scenario, ScenarioError  # noqa: F401
