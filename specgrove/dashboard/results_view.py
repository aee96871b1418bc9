"""One run's results on a page: headline metrics, percentiles, latency CDFs, the tau
distribution and utilisation. Used for a simulated run and for a real ``load`` run alike
(both write the same ``summary.json`` and ``requests.csv``)."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts

# label, summary key, format: what st.metric shows (tests compare these with run_scenario's).
HEADLINE = (
    ("Throughput (tokens/s)", "throughput_tokens_per_s", "{:.1f}"),
    ("Throughput (req/s)", "throughput_requests_per_s", "{:.2f}"),
    ("Goodput (req/s)", "goodput_requests_per_s", "{:.2f}"),
    ("SLO attainment", "slo_attainment", "{:.1%}"),
    ("Mean tau", "mean_tau", "{:.2f}"),
)
PERCENTILES = (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"), ("Queueing", "queueing_s"))
UTILISATION = (("target GPUs", "gpu"), ("draft GPU", "draft_gpu"), ("TP link", "tp_link"),
               ("draft link", "draft_link"), ("draft/target overlap", "overlap"))


def fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def headline(summary: dict) -> list[tuple[str, str]]:
    rows = [(label, fmt(summary.get(key), pattern)) for label, key, pattern in HEADLINE]
    rows.append(("Finished", f"{summary['num_finished']} / {summary['num_requests']}"))
    return rows


def percentile_table(summary: dict) -> pd.DataFrame:
    rows = []
    for name, key in PERCENTILES:
        p = summary.get(key) or {}
        ms = {q: None if p.get(q) is None else p[q] * 1e3 for q in ("mean", "p50", "p90", "p99")}
        rows.append({"latency": name, **{q: fmt(v, "{:.2f}") for q, v in ms.items()}})
    return pd.DataFrame(rows).set_index("latency")


def show(summary: dict, requests: pd.DataFrame, utilisation: pd.DataFrame | None = None) -> None:
    """Everything about one run: headline metrics, percentiles, tau, CDFs, utilisation."""
    for col, (label, value) in zip(st.columns(len(HEADLINE) + 1), headline(summary)):
        col.metric(label, value)
    st.caption("Throughput and goodput span the first arrival to the last finish; goodput counts requests "
               "that met every SLO.")
    left, right = st.columns([1, 2])
    left.markdown("**Latency percentiles (ms)**")
    left.dataframe(percentile_table(summary))
    done = requests[requests["e2e_s"].notna()] if "e2e_s" in requests else requests
    with right:
        if "tau" in done and done["tau"].notna().any():
            st.altair_chart(charts.histogram(done["tau"], "tau"), width="stretch")
        else:
            st.info("No per-request tau in these results.")
    cols = st.columns(3)
    for col, chart in zip(cols, charts.latency_cdfs(done)):
        col.altair_chart(chart, width="stretch")
    util = summary.get("utilisation") or {}
    # The target GPUs always; the rest where this deployment has them (a busy fraction above 0).
    shown = [(label, util.get(k)) for label, k in UTILISATION if util.get(k) is not None and (k == "gpu" or util[k] > 0)]
    if shown:
        st.markdown("**Utilisation (busy fraction of the run)**")
        for col, (label, value) in zip(st.columns(len(shown)), shown):
            col.metric(label, f"{value:.1%}")
    if utilisation is not None:
        st.altair_chart(charts.utilisation_chart(utilisation), width="stretch")
