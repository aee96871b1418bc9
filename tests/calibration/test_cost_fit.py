"""The cost fit targets the mean step time (what a simulator adds up), keeps far outliers from
bending it, and fits each traced method on its own steps as well as all of them together."""

import dataclasses
import json

import numpy as np
import pytest

from specgrove.calibration.cost_fit import robust_fit
from specgrove.calibration.profile import ProfileError, calibrate, load_profile
from specgrove.sim.api import resolve_any, run_scenario
from specgrove.trace import Labels, Trace, read_trace

from test_calibration import TRUE_COST, scenario


def features(n, rng):
    batch = rng.integers(1, 9, n)
    tokens = batch * rng.integers(1, 17, n)
    return np.column_stack([np.ones(n), batch, tokens, batch * rng.integers(16, 400, n)]).astype(float)


def test_the_fit_matches_the_mean_under_right_skewed_noise():
    """Step times with a long right tail (lognormal, mean 1): the fitted mean equals the
    measured mean within 1%, where a median fit would run about 11% short (exp(-sigma²/2))."""
    rng = np.random.default_rng(0)
    true = np.array([2e-3, 3e-4, 6e-5, 2e-7])
    x = features(4000, rng)
    sigma = 0.5
    y = x @ true * rng.lognormal(-sigma**2 / 2, sigma, len(x))
    coef = robust_fit(x, y)
    assert (x @ coef).mean() == pytest.approx(y.mean(), rel=0.01)
    median_fit = np.exp(-sigma**2 / 2)  # what a fit of the typical step would give, relative to the mean
    assert abs((x @ coef).mean() / y.mean() - median_fit) > 0.08


def test_a_far_outlier_does_not_bend_the_fit():
    rng = np.random.default_rng(1)
    true = np.array([2e-3, 3e-4, 6e-5, 2e-7])
    x = features(2000, rng)
    y = x @ true * rng.normal(1.0, 0.05, len(x))
    clean = robust_fit(x, y)
    y[7] = 5.0  # a five-second stall (swap, a debugger) in one step of a few milliseconds
    dirty = robust_fit(x, y)
    # What the simulator reads, the fitted step times, move by about 1% (it holds half the
    # trace's total time): the outlier pulls only as hard as a point ten sigmas out.
    shift = np.abs(x @ dirty / (x @ clean) - 1)
    assert shift.mean() < 0.01 and shift.max() < 0.03
    # Plain least squares would be pulled far off by that one point.
    plain = np.linalg.lstsq(x, y, rcond=None)[0]
    assert np.abs(x @ plain / (x @ clean) - 1).mean() > 0.2


def labelled(path, method):
    trace = read_trace(path)
    out = Trace()
    for rec in [*trace.steps, *trace.prefills, *trace.requests]:
        out.add(dataclasses.replace(rec, labels=Labels(method=method)))
    return out


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    """A trace of two methods whose forwards cost differently: "dynamic" at TRUE_COST, "chain"
    at twice every term."""
    root = tmp_path_factory.mktemp("methods")
    slow = dataclasses.replace(TRUE_COST, **{k: 2 * v for k, v in vars(TRUE_COST).items() if v is not None})
    run_scenario(scenario(duration_s=30.0), cost_model=TRUE_COST, trace_path=root / "dynamic.jsonl")
    run_scenario(scenario(duration_s=30.0, policies__tree="chain", policies__tree_options={}), cost_model=slow,
                 trace_path=root / "chain.jsonl")
    merged = Trace()
    for method in ("dynamic", "chain"):
        part = labelled(root / f"{method}.jsonl", method)
        merged.steps += part.steps
        merged.prefills += part.prefills
        merged.requests += part.requests
    profile, _ = calibrate(merged, ["dynamic.jsonl", "chain.jsonl"])
    return root, profile, slow


def test_each_traced_method_gets_its_own_cost_model(two_methods):
    root, profile, slow = two_methods
    assert sorted(profile.cost_by_method) == ["chain", "dynamic"]
    for method, want in (("dynamic", TRUE_COST), ("chain", slow)):
        got = profile.cost_by_method[method]
        for name in ("target_base_s", "target_per_token_s", "draft_base_s", "step_base_s"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=0.03), (method, name)
    # One model for both cannot explain them; each method's own does, exactly.
    assert profile.fit["verify"]["r2"] < 0.99
    assert set(profile.fit["by_method"]) == {"chain", "dynamic"}
    for method in ("chain", "dynamic"):
        assert profile.fit["by_method"][method]["verify"]["r2"] > 0.999


def test_a_scenario_runs_on_its_methods_cost_and_others_on_the_pooled_one(two_methods):
    root, profile, _ = two_methods
    path = root / "profile.json"
    profile.save(path)
    loaded = load_profile(path)
    assert loaded.cost_by_method == profile.cost_by_method
    for tree, want in (("chain", profile.cost_by_method["chain"]), ("dynamic", profile.cost_by_method["dynamic"]),
                       ("sequoia", profile.cost)):
        _, built = resolve_any(scenario(calibration__profile=str(path), policies__tree=tree, policies__tree_options={}))
        assert built.cost == want, tree


def test_a_bad_per_method_cost_is_named(two_methods, tmp_path):
    root, profile, _ = two_methods
    data = profile.to_json()
    data["cost_by_method"]["chain"].pop("target_base_s")
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"'cost_by_method.chain' must have exactly the fields"):
        load_profile(bad)
    data["cost_by_method"] = [1, 2]
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="'cost_by_method' must map method -> cost terms"):
        load_profile(bad)


def test_separate_prefill_traces_recover_the_cost_terms(tmp_path):
    """A run with the executor's step structure (prefill lines, no prefill inside steps): the
    prefills get terms of their own, which price each prefill as the truth's forward over the
    prompt did, and the step terms price every step as the truth did. (The step terms alone
    are not identifiable here: ``dynamic`` splits a fixed node budget, so a step's tokens are
    its batch plus 12, and base, per-request and per-token trade off along that line.)"""
    path = tmp_path / "trace.jsonl"
    run_scenario(scenario(deployment__prefill="separate"), cost_model=TRUE_COST, trace_path=path)
    trace = read_trace(path)
    assert trace.prefills and not any(s.num_prefill for s in trace.steps)
    got = calibrate(trace, [str(path)])[0].cost
    assert got.prefill_base_s is not None and got.draft_prefill_base_s is not None
    for p in trace.prefills:
        want = TRUE_COST.target_forward_s(p.num_requests, p.prompt_tokens, 0), TRUE_COST.draft_step_s(
            p.num_requests, p.prompt_tokens, 0)
        assert got.prefill_s(p.num_requests, p.prompt_tokens) == pytest.approx(want, rel=1e-3)
    for s in trace.steps:
        assert got.target_forward_s(s.batch_size, s.tokens_in_forward, s.context_tokens) == pytest.approx(
            s.verify_ms / 1e3, rel=1e-3)
    for name in ("draft_base_s", "draft_per_token_s", "step_base_s"):
        assert getattr(got, name) == pytest.approx(getattr(TRUE_COST, name), rel=0.02, abs=1e-9), name
    assert got.admit_s(1) == pytest.approx((0.0, 0.0), abs=1e-7)  # the truth has no admission host work


def test_the_front_end_latency_is_what_clients_saw_on_top_of_the_server():
    from specgrove.calibration.profile import frontend_latency
    from specgrove.trace import RequestTimes

    trace = Trace()
    for rid, (arrival, first) in enumerate([(0.0, 0.010), (1.0, 1.030)]):
        trace.add(RequestTimes(rid, 8, 4, arrival, arrival, first, first + 0.1))
    # Server TTFTs 10 and 30 ms (mean 20); clients saw 25 and 39 ms (mean 32): 12 ms on top.
    assert frontend_latency(trace, [0.025, 0.039]) == pytest.approx(0.012)
    assert frontend_latency(trace, [0.001, 0.002]) == 0.0  # never negative
    with pytest.raises(ProfileError, match="client runs hold 3 finished requests but the traces 2"):
        frontend_latency(trace, [0.02, 0.03, 0.04])


def test_the_simulator_adds_the_front_end_latency_to_ttft_and_e2e(two_methods, tmp_path):
    root, profile, _ = two_methods
    runs = {}
    for frontend in (0.0, 0.025):
        profile.frontend_s = frontend
        path = tmp_path / f"profile-{frontend}.json"
        profile.save(path)
        assert load_profile(path).frontend_s == frontend
        runs[frontend] = run_scenario(scenario(duration_s=10.0, calibration__profile=str(path),
                                               acceptance__mode="tabulated")).requests
    base, shifted = runs[0.0], runs[0.025]
    assert len(base) == len(shifted) > 10
    for a, b in zip(base, shifted):
        assert b["ttft_s"] == pytest.approx(a["ttft_s"] + 0.025, abs=1e-12)
        assert b["e2e_s"] == pytest.approx(a["e2e_s"] + 0.025, abs=1e-12)
        assert b["tpot_s"] == a["tpot_s"] and b["queueing_s"] == a["queueing_s"]
    profile.frontend_s = 0.0


def test_a_bad_front_end_latency_is_named(two_methods, tmp_path):
    root, profile, _ = two_methods
    data = profile.to_json()
    data["frontend_s"] = -1
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"'frontend_s' must be seconds in \[0, 60\), got -1"):
        load_profile(bad)
