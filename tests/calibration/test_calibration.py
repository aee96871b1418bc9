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


def test_recovers_lookup_s_order_shares_by_own_output_cached(tmp_path):
    """Matches that grow likelier as a request writes more (the model repeats itself): a
    simulated run whose order shares depend on each request's own output cached, calibrated,
    gives back the shares of every fitted bin that lies inside one of the law's bins."""
    edges = [8, 32]
    by_generated = [[0.1, 0.0, 0.05], [0.3, 0.05, 0.2], [0.2, 0.05, 0.6]]
    path = tmp_path / "lookup.jsonl"
    run_scenario(scenario(policies={"tree": "lookup", "tree_options": {"length": 4}, "tree_budget": 12},
                          acceptance__lookup={"orders": [0.3, 0.05, 0.3], "accept": [[0.3, 0.6], [0.5], [0.9, 0.8]],
                                              "generated_edges": edges, "orders_by_generated": by_generated}),
                 cost_model=TRUE_COST, trace_path=path)
    profile = calibrate(read_trace(path), [str(path)])[0]
    fitted, rows = profile.lookup["generated_edges"], profile.lookup["orders_by_generated"]
    counts = profile.fit["lookup"]["requests_by_generated"]
    assert len(rows) == len(fitted) + 1 == len(counts) and min(counts) >= 100
    bounds, truth = [0, *fitted, 10**9], [0, *edges, 10**9]
    checked = 0
    for lo, hi, count, got in zip(bounds, bounds[1:], counts, rows):
        inside = [k for k in range(len(by_generated)) if truth[k] <= lo and hi <= truth[k + 1]]
        if inside and count >= 500:
            np.testing.assert_allclose(got, by_generated[inside[0]], atol=0.04)
            checked += 1
    assert checked >= 2
    saved = tmp_path / "profile.json"
    profile.save(saved)
    assert load_profile(saved).lookup == profile.lookup


def test_quantile_edges_split_evenly_and_starve_no_bin():
    from specgrove.calibration.acceptance_fit import quantile_edges

    assert quantile_edges(list(range(1000))) == [200, 400, 600, 800]  # five bins of 200
    assert quantile_edges(list(range(250))) == [125]  # room for two bins of 100 only
    assert quantile_edges(list(range(199))) == []  # not even two
    # 900 steps at one value and 150 spread above it: ties stay in one bin, and bins merge
    # until each holds 100.
    ties = [10] * 900 + list(range(11, 161))
    edges = quantile_edges(ties)
    counts = np.bincount(np.searchsorted(edges, ties, side="right"))
    assert edges == [11] and counts.tolist() == [900, 150]


SPLIT = 20  # the hand-made law below: a request emits 1 a step until it has 20 of its own tokens cached, then 5


def _binned_profile(profile, tmp_path, binned: bool):
    """The fixture's profile with hand-made ``dynamic`` rows: 1 token a step while a request
    has under ``SPLIT`` of its own output cached, 5 from then on (pooled: half and half)."""
    data = profile.to_json()
    short, long = [2, 1, 2, 2, 500], [6, 5, 3, 4, 500]
    data["acceptance_rows"] = {"dynamic": {"default": [short, long]}}
    data["acceptance_rows_by_generated"] = (
        {"dynamic": {"default": {"edges": [SPLIT], "rows": [[short], [long]]}}} if binned else {})
    path = tmp_path / f"binned-{binned}.json"
    path.write_text(json.dumps(data))
    return path


def _simulate_binned(path, trace_path, seed=3):
    run_scenario(scenario(acceptance__mode="tabulated", calibration__profile=str(path), duration_s=20.0,
                          workload__prompt={"dist": "uniform", "low": 40, "high": 80},
                          workload__output={"dist": "uniform", "low": 40, "high": 90}), trace_path=trace_path, seed=seed)
    return read_trace(trace_path)


@pytest.mark.parametrize("binned", [True, False])
def test_tabulated_mode_draws_each_request_s_row_from_its_bin_of_output_cached(profile, tmp_path, binned):
    """Golden: with rows by output cached, every simulated step of a request with under 20 of
    its own tokens cached emits 1 and every later one 5; with the pooled rows alone, both
    kinds of step mix them."""
    path = _binned_profile(profile, tmp_path, binned)
    trace = _simulate_binned(path, tmp_path / "sim.jsonl")
    prompt = {r.request_id: r.prompt_tokens for r in trace.requests}
    shares = [r for s in trace.steps for r in s.requests if r.accepted_len + 1 == r.emitted and r.request_id in prompt]
    early = {r.emitted for r in shares if r.context_tokens - prompt[r.request_id] < SPLIT}
    late = {r.emitted for r in shares if r.context_tokens - prompt[r.request_id] >= SPLIT}
    if binned:
        assert early == {1} and late == {5}
    else:
        assert early == late == {1, 5}
    assert load_profile(path).acceptance_rows_by_generated == json.loads(path.read_text())["acceptance_rows_by_generated"]


def test_calibrate_follows_each_request_across_merged_runs(profile, tmp_path):
    """Two simulated runs of the law above, merged as ``calibrate`` merges traces (their
    request ids restart at 0): the bins calibration finds put every 1-token step below 20
    tokens of output cached and every 5-token step at or past it. Keyed by request id alone,
    the second run's requests would be measured from the first run's prompts."""
    from specgrove.calibration.acceptance_fit import acceptance_rows_by_generated

    path = _binned_profile(profile, tmp_path, True)
    merged = _simulate_binned(path, tmp_path / "a.jsonl", seed=3)
    second = _simulate_binned(path, tmp_path / "b.jsonl", seed=4)
    merged.steps += second.steps
    b = acceptance_rows_by_generated(merged)["dynamic"]["default"]
    bounds = [0, *b["edges"], 10**9]
    for lo, hi, rows in zip(bounds, bounds[1:], b["rows"]):
        emitted = {r[1] for r in rows}
        assert emitted == ({1} if hi <= SPLIT else {5} if lo >= SPLIT else {1, 5}), (lo, hi, emitted)
    assert SPLIT in b["edges"] or any(lo < SPLIT < hi for lo, hi in zip(bounds, bounds[1:]))


def test_calibrate_bins_the_measured_rows_by_output_cached(traced):
    """On the fixture's run: the bins hold every request step once, and their pooled law is
    the unbinned rows'."""
    _, path, _ = traced
    profile = calibrate(read_trace(path), [str(path)])[0]
    b = profile.acceptance_rows_by_generated["dynamic"]["default"]
    assert len(b["edges"]) == 4 and len(b["rows"]) == 5
    pooled = {}
    for rows in b["rows"]:
        assert sum(r[4] for r in rows) >= 100
        for r in rows:
            pooled[tuple(r[:4])] = pooled.get(tuple(r[:4]), 0) + r[4]
    assert pooled == {tuple(r[:4]): r[4] for r in profile.acceptance_rows["dynamic"]["default"]}


@pytest.mark.parametrize("bins, message", [
    ({"edges": [100, 50], "rows": [[[1, 1, 1, 1, 1]]] * 3}, "acceptance_rows_by_generated"),
    ({"edges": [100], "rows": [[[1, 1, 1, 1, 1]]]}, "acceptance_rows_by_generated"),
    ({"edges": [100], "rows": [[[1, 1, 1, 1, 1]], []]}, "acceptance_rows_by_generated"),
    ({"edges": [100], "rows": [[[1, 1, 1, 1, 0]], [[1, 1, 1, 1, 1]]]}, "acceptance_rows_by_generated"),
])
def test_bad_output_bins_are_named(profile, tmp_path, bins, message):
    data = profile.to_json()
    data["acceptance_rows_by_generated"] = {"dynamic": {"default": bins}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_replay_profile_keeps_the_base_s_lookup_and_bins_other_methods_as_the_base_does(profile, traced, tmp_path):
    """A replay swaps in the recorded run's rows (pooled and binned) for the method it ran,
    and keeps everything else of the scenario's profile, prompt lookup's fit included."""
    from specgrove.calibration.replay import replay_profile

    _, path, _ = traced
    base = profile.to_json()
    base["lookup"] = {"orders": [0.3, 0.1], "accept": [[0.5], [0.8]]}
    chain_bins = {"edges": [50], "rows": [[[4, 2, 4, 4, 100]], [[4, 4, 4, 4, 100]]]}
    base["acceptance_rows"] = {"chain": {"default": [[4, 3, 4, 4, 200]]}, "dynamic": {"default": [[1, 1, 1, 1, 9]]}}
    base["acceptance_rows_by_generated"] = {"chain": {"default": chain_bins},
                                          "dynamic": {"default": {"edges": [7], "rows": [[[1, 1, 1, 1, 5]]] * 2}}}
    base_path = tmp_path / "base.json"
    base_path.write_text(json.dumps(base))
    replayed, methods = replay_profile(load_profile(base_path), path)
    assert methods == ["dynamic"]
    assert replayed.lookup == base["lookup"]
    assert replayed.acceptance_rows["chain"] == base["acceptance_rows"]["chain"]
    assert replayed.acceptance_rows_by_generated["chain"]["default"] == chain_bins
    assert replayed.acceptance_rows["dynamic"] == profile.acceptance_rows["dynamic"]
    assert replayed.acceptance_rows_by_generated["dynamic"] == profile.acceptance_rows_by_generated["dynamic"]


def test_recovers_separate_prefill_and_admission_terms(tmp_path):
    """A simulated run that prefills apart (as the executor does), with prefill forwards and
    admission host work priced by terms of their own: calibration gives every term back, and
    the profile reproduces the run's TTFT (which the step terms alone would price short)."""
    from dataclasses import replace

    truth = replace(TRUE_COST, prefill_base_s=1e-3, prefill_per_request_s=3e-3, prefill_per_token_s=8e-5,
                    draft_prefill_base_s=5e-4, draft_prefill_per_request_s=4e-4, draft_prefill_per_token_s=2e-5,
                    admit_base_s=3e-4, admit_per_request_s=4e-4, after_prefill_s=6e-4)
    data = scenario(deployment={"max_batch": 8, "prefill": "separate"})
    path = tmp_path / "separate.jsonl"
    original = run_scenario(data, cost_model=truth, trace_path=path).summary
    trace = read_trace(path)
    assert len(trace.prefills) > 400 and any(p.num_requests > 1 for p in trace.prefills)
    profile = calibrate(trace, [str(path)])[0]
    got = vars(profile.cost)
    for name, want in vars(truth).items():
        if name.startswith(("prefill_", "draft_prefill_", "admit_", "after_")):
            assert got[name] == pytest.approx(want, rel=0.02, abs=1e-9), name
    for name in ("prefill", "draft_prefill", "admit", "after_prefill"):
        assert profile.fit[name]["points"] > 100 and profile.fit[name]["rel_error_p99"] < 0.01, name
    saved = tmp_path / "profile.json"
    profile.save(saved)
    assert load_profile(saved).cost == profile.cost
    again = run_scenario({**data, "acceptance": {**data["acceptance"], "mode": "tabulated"},
                          "calibration": {"profile": str(saved)}}).summary
    assert again["ttft_s"]["mean"] == pytest.approx(original["ttft_s"]["mean"], rel=0.03)
    # Without the prefill and admission terms the same profile prices TTFT short.
    bare = json.loads(saved.read_text())
    for name in list(bare["cost"]):
        if name.startswith(("prefill_", "draft_prefill_", "admit_", "after_")):
            del bare["cost"][name]
    saved.write_text(json.dumps(bare))
    short = run_scenario({**data, "acceptance": {**data["acceptance"], "mode": "tabulated"},
                          "calibration": {"profile": str(saved)}}).summary
    assert short["ttft_s"]["mean"] < 0.9 * original["ttft_s"]["mean"]


def test_time_scale_scales_every_fitted_time(profile, tmp_path):
    """``[calibration] time_scale``: every time the profile fitted, the front end's included,
    runs that many times longer; 1 leaves the profile as it is. With requests rarely meeting on
    the server, mean TPOT scales by the factor (within 2%: an occasional overlap batches
    differently at either speed)."""
    from dataclasses import replace

    from specgrove.sim.api import resolve_any

    data = profile.to_json()
    data["frontend_s"] = 0.004
    data["cost"] = {**data["cost"], "admit_base_s": 3e-4, "after_prefill_s": 2e-4}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    loaded = load_profile(path)
    _, built = resolve_any(scenario(calibration__profile=str(path), calibration__time_scale=2.0))
    assert built.cost == replace(loaded.cost, **{k: None if v is None else 2 * v for k, v in vars(loaded.cost).items()})
    assert built.frontend_s == pytest.approx(0.008)
    _, plain = resolve_any(scenario(calibration__profile=str(path)))
    assert plain.cost == loaded.cost and plain.frontend_s == pytest.approx(0.004)
    lone = dict(workload__arrival="poisson", workload__rate=0.05, duration_s=400.0, acceptance__mode="tabulated",
                calibration__profile=str(path))
    one, two = (run_scenario(scenario(**lone, calibration__time_scale=f), seed=5).summary for f in (1.0, 2.0))
    assert two["tpot_s"]["mean"] == pytest.approx(2 * one["tpot_s"]["mean"], rel=0.02)
