"""Sweep: vary one or two fields of the what-if scenario; latency and throughput against the
first field, one line per value of the second (a policy), and dynamic over static as bars."""

from __future__ import annotations

import copy
import json

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts, scenario_form
from specgrove.sim.api import prepare_sweep, run_scenario
from specgrove.sim.scenario import ScenarioError, validate_fields
from specgrove.sim.sweep import parse_vary

RESULTS = "sw_results"
METRICS = {  # label -> (summary getter, lower is better)
    "p50 E2E latency (s)": (lambda s: s["e2e_s"]["p50"], True),
    "mean E2E latency (s)": (lambda s: s["e2e_s"]["mean"], True),
    "p99 E2E latency (s)": (lambda s: s["e2e_s"]["p99"], True),
    "p50 TPOT (s)": (lambda s: s["tpot_s"]["p50"], True),
    "p50 TTFT (s)": (lambda s: s["ttft_s"]["p50"], True),
    "goodput (req/s)": (lambda s: s["goodput_requests_per_s"], False),
}


def rows(results: list[tuple[dict, dict]]) -> pd.DataFrame:
    """One row per variant: its field values and headline metrics."""
    out = []
    for vary, s in results:
        row = {k: v for k, v in vary.items()}
        row.update({"throughput (tokens/s)": s["throughput_tokens_per_s"], "req/s": s["throughput_requests_per_s"],
                    "mean tau": s["mean_tau"], **{label: get(s) for label, (get, _) in METRICS.items()}})
        out.append(row)
    return pd.DataFrame(out)


def speedups(frame: pd.DataFrame, x: str, policy: str, fast: str, slow: str, metric: str) -> pd.DataFrame:
    """``slow``'s metric over ``fast``'s (latency) or the reverse (throughput-like), per x."""
    lower = METRICS[metric][1] if metric in METRICS else False
    out = []
    for xv, g in frame.groupby(x, sort=True):
        by = {str(p): r for p, r in zip(g[policy], g.to_dict("records"))}
        if fast in by and slow in by and by[fast][metric] and by[slow][metric]:
            ratio = by[slow][metric] / by[fast][metric] if lower else by[fast][metric] / by[slow][metric]
            out.append({x: str(xv), "speed-up": ratio, "pair": f"{fast} over {slow}"})
    return pd.DataFrame(out)


def _row_of(message: str, f1: str, f2: str) -> int:
    """Which input row (0: first field, 1: second) a message is about."""
    return 1 if f2 and f2 in message and f1 not in message else 0


def _inputs() -> tuple[dict | None, tuple[str, str], dict[int, str]]:
    """The fields to vary, their names, and an error by input row."""
    c1, c2 = st.columns(2)
    f1 = c1.text_input("First field (the x axis)", "workload.rate", key="sw_f1").strip()
    v1 = c1.text_input("its values", "2,4,8", key="sw_v1")
    f2 = c2.text_input("Second field (one line each; blank: none)", "policies.tree", key="sw_f2").strip()
    v2 = c2.text_input("its values", "static,dynamic", key="sw_v2")
    if not f1:
        return None, (f1, f2), {0: "give a field to vary, e.g. workload.rate"}
    try:
        vary = parse_vary([f"{f1}={v1}"] + ([f"{f2}={v2}"] if f2 else []))
    except ScenarioError as exc:
        return None, (f1, f2), {_row_of(str(exc), f1, f2): str(exc)}
    return vary, (f1, f2), {}


def render() -> None:
    st.title("Sweep: vary one or two fields")
    base_data = copy.deepcopy(st.session_state.get(scenario_form.DATA) or scenario_form.default_data())
    st.caption(f"Base scenario: the What-if page's ({base_data['name']}); edit it there. Values are "
               "comma-separated, as `specgrove sweep --vary` takes them.")
    vary, (f1, f2), errors = _inputs()
    variants = None
    if vary is not None:
        try:
            variants = prepare_sweep(validate_fields(base_data), vary)
        except ScenarioError as exc:  # a field that does not exist, a sweep too large to run
            errors = {_row_of(str(exc), f1, f2): str(exc)}
        else:
            bad = [v for v in variants if v.error]
            if bad:
                errors = {_row_of(bad[0].error, f1, f2): f"variant {bad[0].label}: {bad[0].error}"}
                variants = None
    cols = st.columns(2)
    for row, message in errors.items():
        cols[row].error(message)
    if variants is not None:
        st.caption(f"{len(variants)} variants, run one after another")
    if st.button("Run sweep", type="primary", disabled=variants is None, key="sw_run"):
        bar = st.progress(0.0, text="starting")
        results = []
        try:
            for i, v in enumerate(variants):
                bar.progress(i / len(variants), text=f"variant {i + 1} of {len(variants)}: {v.label}")
                results.append((v.overrides, run_scenario(v.scenario, built=v.built).summary))
        except Exception as exc:  # one line on the page, never a traceback
            st.error(f"the sweep failed: {type(exc).__name__}: {exc}")
        else:
            bar.empty()
            st.session_state[RESULTS] = {"vary": vary, "results": results}
    _show()


def _show() -> None:
    done = st.session_state.get(RESULTS)
    if not done:
        return
    fields = list(done["vary"])
    frame = rows(done["results"])
    x, policy = fields[0], (fields[1] if len(fields) > 1 else None)
    numeric = pd.api.types.is_numeric_dtype(frame[x])
    if policy:
        frame[policy] = frame[policy].astype(str)
    metric = st.selectbox("Latency metric", list(METRICS), key="sw_metric")
    left, right = st.columns(2)
    left.altair_chart(charts.lines(frame, x, metric, policy, f"{metric} against {x}", x_type="Q" if numeric else "N"),
                      width="stretch")
    right.altair_chart(charts.lines(frame, x, "throughput (tokens/s)", policy, f"throughput against {x}",
                                    x_type="Q" if numeric else "N"), width="stretch")
    if policy:
        values = list(dict.fromkeys(frame[policy]))
        c1, c2 = st.columns(2)
        fast = c1.selectbox("Speed-up of", values, index=_index(values, ("dynamic", "dynamic-cost")), key="sw_fast")
        slow = c2.selectbox("over", values, index=_index(values, ("static", "sequoia", "chain", "ar")), key="sw_slow")
        ratio = speedups(frame, x, policy, fast, slow, metric)
        if len(ratio):
            st.altair_chart(charts.grouped_bars(ratio, x, "speed-up", "pair", f"speed-up in {metric} (above 1: "
                                                f"{fast} is better)", rule=1.0), width="stretch")
    st.dataframe(frame, hide_index=True)
    entries = [{"vary": v, "status": "ok", "summary": s} for v, s in done["results"]]
    st.download_button("Download sweep.json", json.dumps(entries, indent=2), file_name="sweep.json", key="sw_dl")


def _index(values: list[str], preferred: tuple[str, ...]) -> int:
    return next((values.index(p) for p in preferred if p in values), 0)
