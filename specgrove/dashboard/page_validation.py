"""Validation: ``specgrove validate``'s output, the real executor against the calibrated
simulator on the same arrivals: per-metric errors, real against simulated CDFs, rankings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts
from specgrove.dashboard.data import ResultsError, default_path, load_validation, stamp

# What validation.json records of each latency's distribution: (metric key, quantile).
QUANTILES = {"ttft": (("ttft_p50_s", 0.5), ("ttft_p99_s", 0.99)),
             "tpot": (("tpot_p50_s", 0.5), ("tpot_p99_s", 0.99)),
             "e2e": (("e2e_p50_s", 0.5), ("e2e_p99_s", 0.99))}


@st.cache_data(show_spinner=False, max_entries=4)
def _validation(path: str, _stamp: float) -> dict:
    return load_validation(path)


def error_table(runs: list[dict]) -> pd.DataFrame:
    """One row per (policy, metric): real, simulated and the relative error."""
    rows = [{"policy": r["policy"], "metric": name, "real": m["real"], "sim": m["sim"],
             "error": None if m["rel_error"] is None else f"{m['rel_error']:+.1%}"}
            for r in runs for name, m in r["metrics"].items()]
    return pd.DataFrame(rows)


def quantile_points(runs: list[dict], latency: str) -> pd.DataFrame:
    rows = [{"policy": r["policy"], "world": world, "value": r["metrics"][key][world], "fraction": q}
            for r in runs for key, q in QUANTILES[latency] for world in ("real", "sim")
            if r["metrics"].get(key, {}).get(world) is not None]
    return pd.DataFrame(rows, columns=["policy", "world", "value", "fraction"])


def ranking_table(ranking: dict) -> pd.DataFrame:
    return pd.DataFrame({"rank": range(1, len(ranking["real"]) + 1), "real": ranking["real"],
                         "simulated": ranking["sim"]})


def _cdfs(data: dict, load: float, runs: list[dict]) -> None:
    rows = {(p, w): f for (l, p, w), f in data["rows"].items() if l == load}
    cols = st.columns(3)
    if rows:
        for col, (key, name) in zip(cols, charts.LATENCIES):
            frame = pd.concat([charts.ecdf_frame(f[key], policy=p, world=w) for (p, w), f in rows.items()],
                              ignore_index=True)
            col.altair_chart(charts.cdf_chart(frame, name, color="policy", dash="world", log_x=True), width="stretch")
        return
    for col, latency in zip(cols, QUANTILES):
        col.altair_chart(charts.quantile_chart(quantile_points(runs, latency), latency.upper()), width="stretch")
    st.caption("validation.json keeps each distribution's p50 and p99; with per-request files beside it "
               "(requests_load<L>_<policy>_<real|sim>.csv) the full CDFs are drawn instead.")


def render() -> None:
    st.title("Validation: real executor against the simulator")
    path = st.text_input("A `specgrove validate --out` directory (validation.json)",
                         default_path("benchmarks/results/validation-cpu"), key="va_path")
    if not path.strip():
        st.info("Give a validation directory.")
        return
    try:
        data = _validation(path, stamp(path))
    except ResultsError as exc:
        st.error(str(exc))
        return
    st.caption(f"`{data.get('command', '')}`")
    cap = data.get("capacity_requests_per_s")
    if cap:
        st.caption(f"Capacity measured {cap:.2f} req/s ({data.get('capacity_policy')}); loads are fractions of it.")
    loads = data["loads"]
    load = st.radio("Load (fraction of capacity)", loads, format_func=lambda x: f"{x:.0%}", horizontal=True,
                    key="va_load")
    runs = [r for r in data["runs"] if r["load"] == load]
    _cdfs(data, load, runs)
    ranking = data["ranking"].get(f"{load:g}")
    if ranking:
        left, right = st.columns([2, 1])
        left.markdown(f"**Ranking by {ranking['by']}** (lower is better)")
        left.dataframe(ranking_table(ranking), hide_index=True)
        tau = ranking.get("kendall_tau")
        right.metric("Kendall tau (real vs simulated order)", "-" if tau is None else f"{tau:.2f}")
    errors = error_table(runs)
    st.markdown("**Real against simulated, per metric**")
    st.dataframe(errors, hide_index=True)
