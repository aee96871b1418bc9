"""Study: a ``specgrove study --out DIR`` directory as interactive charts, from its CSVs."""

from __future__ import annotations

import os
import re

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts
from specgrove.dashboard.data import ResultsError, default_path, load_study, stamp

STUDY_ENV = "SPECGROVE_STUDY_DIR"  # set by ``specgrove dashboard --study DIR`` (commands/dashboard.py)


@st.cache_data(show_spinner=False, max_entries=4)
def _study(path: str, _stamp: float) -> dict:
    return load_study(path)


def _real(real: pd.DataFrame, ratios: pd.DataFrame) -> None:
    st.subheader("Real runs on the machine that ran the study")
    frame = real.assign(batch=real["batch_size"].map(lambda b: f"batch {b}"))
    cells = list(frame.groupby(["domain", "temperature"], sort=False))
    for i in range(0, len(cells), 2):
        for col, ((domain, temp), g) in zip(st.columns(2), cells[i:i + 2]):
            col.altair_chart(charts.grouped_bars(g, "batch", "speedup_vs_ar", "method",
                                                 f"{domain} prompts, temperature {temp:g}: tokens/s over ar",
                                                 y_title="speed-up over ar", rule=1.0), width="stretch")
    st.markdown("**Dynamic over static trees (tokens/s ratios; above 1: dynamic is faster)**")
    st.dataframe(ratios, hide_index=True)


def _sim(sim: pd.DataFrame, speedups: pd.DataFrame) -> None:
    st.subheader("Simulated clusters")
    load = sim[sim["experiment"] == "load"].assign(rate=lambda f: pd.to_numeric(f["x"]))
    for pair, g in load.groupby("pair", sort=False):
        left, right = st.columns(2)
        left.altair_chart(charts.lines(g, "rate", "e2e_mean_s", "policy", f"{pair}: mean end-to-end latency",
                                       x_title="arrival rate (req/s)", y_title="seconds", log_y=True), width="stretch")
        right.altair_chart(charts.lines(g, "rate", "throughput_tokens_per_s", "policy", f"{pair}: throughput",
                                        x_title="arrival rate (req/s)", y_title="output tokens/s"), width="stretch")
    dyn = st.selectbox("Dynamic policy", list(dict.fromkeys(speedups["dynamic"])), key="st_dynamic")
    mine = speedups[(speedups["experiment"] == "load") & (speedups["dynamic"] == dyn)]
    cols = st.columns(max(mine["pair"].nunique(), 1))
    for col, (pair, g) in zip(cols, mine.groupby("pair", sort=False)):
        g = g.assign(rate=g["x"].map(lambda x: f"{float(x):g} req/s"))
        col.altair_chart(charts.grouped_bars(g, "rate", "e2e_speedup", "baseline",
                                             f"{pair}: {dyn}'s latency speed-up", y_title="baseline E2E / dynamic E2E",
                                             rule=1.0), width="stretch")
    deploy = sim[sim["experiment"] != "load"]
    for (pair, exp), g in deploy.groupby(["pair", "experiment"], sort=False):
        st.altair_chart(charts.grouped_bars(g.assign(setting=g["x"].astype(str)), "setting", "e2e_mean_s", "policy",
                                            f"{pair}: {g['x_field'].iloc[0]}", y_title="mean end-to-end latency (s)"),
                        width="stretch")


def render() -> None:
    st.title("Study: dynamic against static trees")
    start = os.environ.get(STUDY_ENV) or default_path("benchmarks/results/study-quick")
    path = st.text_input("A `specgrove study --out` directory", start, key="st_path")
    if not path.strip():
        st.info("Give a study directory: `specgrove study --out DIR --quick` writes one.")
        return
    try:
        data = _study(path, stamp(path))
    except ResultsError as exc:
        st.error(str(exc))
        return
    info = data["info"]
    cols = st.columns(3)
    cols[0].metric("Run time", f"{info.get('seconds', 0):.0f} s")
    cols[1].metric("Real runs", f"{info.get('real', {}).get('seconds', 0):.0f} s")
    cols[2].metric("Simulation", f"{info.get('sim', {}).get('seconds', 0):.0f} s")
    st.caption(f"`{info.get('command', '')}`, finished {info.get('finished_utc', '-')} (UTC) on "
               f"{info.get('real', {}).get('device', '-')}.")
    _real(data["real"], data["real_ratios"])
    _sim(data["sim"], data["sim_speedups"])
    with st.expander("report.md (its figures are the PNGs beside it)"):
        st.markdown(re.sub(r"!\[[^\]]*\]\(([^)]+)\)", r"*(figure: `\1`)*", data["report"]))
