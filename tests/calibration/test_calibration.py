"""Calibration recovers what generated a trace, and a calibrated simulation reproduces the run
it was fitted on."""

import json

import numpy as np
import pytest

from specgrove.calibration.profile import ProfileError, calibrate, load_profile
from specgrove.cli import main
from specgrove.cost import AffineCostModel
from specgrove.sim.api import run_scenario
from specgrove.trace import read_trace

TRUE_COST = AffineCostModel(target_base_s=2e-3, target_per_token_s=5e-5, draft_base_s=4e-4, draft_per_token_s=2e-5,
                            target_per_context_token_s=2e-7, draft_per_context_token_s=0.0,
                            target_per_request_s=1e-4, draft_per_request_s=3e-5, step_base_s=3e-4,
                            step_per_request_s=2e-5)


def scenario(**changes):
    data = {
        "seed": 3, "duration_s": 60.0,
        "cluster": {"gpu": "cpu-2core", "gpus_per_node": 1, "intra_link": "shared-memory"},
        "models": {"pair": "demo"},
        "deployment": {"max_batch": 8},
        "workload": {"arrival": "poisson", "rate": 10.0, "prompt": {"dist": "uniform", "low": 16, "high": 96},
                     "output": {"dist": "uniform", "low": 16, "high": 96}},
        "acceptance": {"mode": "exact", "draft": {"confidence_mean": 0.6, "confidence_concentration": 6.0,
                                                   "tail_ratio": 0.5, "scale": 0.8, "gamma": 1.5}},
        "policies": {"tree": "dynamic", "tree_options": {"topk": 3, "frontier": 3, "max_depth": 5}, "tree_budget": 12},
    }
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal")
    path = root / "trace.jsonl"
    result = run_scenario(scenario(), cost_model=TRUE_COST, trace_path=path)
    return root, path, result


@pytest.fixture(scope="module")
def profile(traced):
    _, path, _ = traced
    return calibrate(read_trace(path), [str(path)])[0]


def test_recovers_known_cost_parameters(profile):
    got, want = vars(profile.cost), vars(TRUE_COST)
    for name in ("target_base_s", "target_per_token_s", "target_per_context_token_s", "target_per_request_s",
                 "draft_base_s", "draft_per_token_s", "draft_per_request_s", "step_base_s", "step_per_request_s"):
        assert got[name] == pytest.approx(want[name], rel=0.02, abs=1e-9), name
    for name in ("verify", "draft", "other"):
        assert profile.fit[name]["r2"] > 0.999


def test_recovers_the_confidence_to_acceptance_curve(profile):
    # The walk's law is P(child) = scale * q ** gamma (scale 0.8, gamma 1.5 above).
    assert profile.draft["scale"] == pytest.approx(0.8, abs=0.08)
    assert profile.draft["gamma"] == pytest.approx(1.5, abs=0.15)


def test_round_trip_reproduces_throughput_and_tpot(traced):
    """Calibrate on one run (seed 3), then simulate with the profile alone: throughput and
    mean TPOT within 1% of the original model's, over three seeds (a seed's own noise in
    mean TPOT is about 0.5-1%, so one seed would test the dice as much as the fit)."""
    root, path, _ = traced
    profile_path = root / "profile.json"
    assert main(["calibrate", str(path), "--out", str(profile_path)]) == 0
    assert (root / "profile.md").exists() and (root / "profile.png").exists()
    original, calibrated, uncalibrated = [], [], []
    for seed in (3, 4, 5):
        original.append(run_scenario(scenario(), cost_model=TRUE_COST, seed=seed).summary)
        calibrated.append(run_scenario(scenario(acceptance__mode="tabulated", calibration__profile=str(profile_path)),
                                       seed=seed).summary)
        uncalibrated.append(run_scenario(scenario(acceptance__mode="tabulated"), seed=seed).summary)

    def mean(runs, metric):
        return float(np.mean([metric(s) for s in runs]))

    for metric in (lambda s: s["throughput_tokens_per_s"], lambda s: s["tpot_s"]["mean"]):
        assert mean(calibrated, metric) == pytest.approx(mean(original, metric), rel=0.01)
    # The check has teeth: without the profile (roofline costs, preset draft) TPOT is far off.
    tpot = lambda s: s["tpot_s"]["mean"]  # noqa: E731
    assert abs(mean(uncalibrated, tpot) / mean(original, tpot) - 1) > 0.05


def test_bad_profiles_are_named(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"version": 1, "cost": {"target_base_s": 1}, "draft": {}}))
    with pytest.raises(ProfileError, match="'cost' must have exactly the fields"):
        load_profile(bad)
    from specgrove.sim.build import parse_scenario
    from specgrove.sim.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"^calibration.profile: .*p.json: 'cost' must"):
        parse_scenario(scenario(calibration__profile=str(bad)))
    with pytest.raises(ScenarioError, match="calibration.profile: .*cannot read profile"):
        parse_scenario(scenario(calibration__profile=str(tmp_path / "none.json")))


def test_recovers_prompt_lookup_s_orders_and_acceptance(tmp_path):
    """A simulated ``lookup`` run with known match orders and per-depth acceptance, traced and
    calibrated: the profile's lookup fit is the law that generated it, and a scenario on the
    profile takes it."""
    orders, accept = [0.5, 0.1, 0.3], [[0.3, 0.6], [0.5], [0.9, 0.8, 0.7]]
    path = tmp_path / "lookup.jsonl"
    run_scenario(scenario(policies={"tree": "lookup", "tree_options": {"length": 4}, "tree_budget": 12},
                          acceptance__lookup={"orders": orders, "accept": accept}),
                 cost_model=TRUE_COST, trace_path=path)
    trace = read_trace(path)
    shares = [r for s in trace.steps for r in s.requests]
    assert shares and all(r.lookup_order >= 0 for r in shares)
    profile = calibrate(trace, [str(path)])[0]
    np.testing.assert_allclose(profile.lookup["orders"], orders, atol=0.02)
    for got, want in zip(profile.lookup["accept"], accept):
        # The last given chance goes on for deeper tokens (a chain is 4 long).
        want = [want[min(j, len(want) - 1)] for j in range(len(got))]
        np.testing.assert_allclose(got, want, atol=0.05)
    assert profile.fit["lookup"]["requests"] == len(shares)
    saved = tmp_path / "profile.json"
    profile.save(saved)
    assert load_profile(saved).lookup == profile.lookup
    # The draft fit takes no lookup chain for a draft tree: this trace has none to fit.
    assert profile.fit["acceptance"]["levels"] == 0


def test_recovers_lookup_s_order_shares_by_context_length_and_chain_lengths(tmp_path):
    """Matches that grow likelier with the context (as the demo pair's do), and chains that
    hold fewer tokens than asked for: a simulated run whose order shares depend on each
    request's cached tokens, calibrated, gives back each context bin's shares (where the bin
    saw enough steps) and each order's law of chain lengths."""
    from specgrove.calibration.acceptance_fit import LOOKUP_CONTEXT_EDGES

    edges = list(LOOKUP_CONTEXT_EDGES)
    by_context = [[0.1, 0.0, 0.1], [0.3, 0.05, 0.15], [0.4, 0.05, 0.3], [0.4, 0.05, 0.45], [0.2, 0.05, 0.7]]
    accept = [[0.3, 0.6], [0.5], [0.9, 0.8, 0.7]]
    lengths = [[0.0, 0.1, 0.1, 0.8], [0.0, 0.0, 0.0, 1.0], [0.1, 0.4, 0.2, 0.3]]  # a chain of 1..4 tokens
    path = tmp_path / "lookup.jsonl"
    run_scenario(scenario(policies={"tree": "lookup", "tree_options": {"length": 4}, "tree_budget": 12},
                          acceptance__lookup={"orders": [0.3, 0.05, 0.3], "accept": accept, "lengths": lengths,
                                              "context_edges": edges, "orders_by_context": by_context}),
                 cost_model=TRUE_COST, trace_path=path)
    profile = calibrate(read_trace(path), [str(path)])[0]
    assert profile.lookup["context_edges"] == edges
    counts = profile.fit["lookup"]["requests_by_context"]
    assert sum(c >= 1000 for c in counts) >= 2, counts  # the workload reaches several bins
    for count, got, want in zip(counts, profile.lookup["orders_by_context"], by_context):
        if count >= 1000:
            np.testing.assert_allclose(got, want, atol=0.03)
        elif count < 100:  # too few to stand alone: the overall shares
            assert got == profile.lookup["orders"]
    for got, want in zip(profile.lookup["lengths"], lengths):  # the chains' lengths, per order
        np.testing.assert_allclose(got, want, atol=0.04)
    saved = tmp_path / "profile.json"
    profile.save(saved)
    assert load_profile(saved).lookup == profile.lookup
