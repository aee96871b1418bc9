"""Executor results, read from their files: ``bench`` (bench.json), ``load`` runs
(summary.json + requests.csv) and recorded trees (a ``--trace`` file)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts, results_view, tree_chart
from specgrove.dashboard.data import ResultsError, default_path, load_bench, load_run, stamp, trace_trees


@st.cache_data(show_spinner=False, max_entries=8)
def _bench(path: str, _stamp: float) -> dict:
    return load_bench(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _run(path: str, _stamp: float):
    return load_run(path)


@st.cache_data(show_spinner=False, max_entries=4)
def _trees(path: str, _stamp: float) -> list[dict]:
    return trace_trees(path)


def bench_frame(data: dict) -> pd.DataFrame:
    frame = pd.DataFrame(data["rows"])
    frame["batch"] = frame["batch_size"].map(lambda b: f"batch {b}")
    return frame


def _bench_section() -> None:
    path = st.text_input("bench.json, or the directory `specgrove bench --out` wrote",
                         default_path("benchmarks/results/demo-cpu"), key="ex_bench")
    upload = st.file_uploader("...or upload a bench.json", type=["json"], key="ex_bench_upload")
    try:
        if upload is not None:
            data = json.loads(upload.getvalue().decode("utf-8"))
            if not isinstance(data, dict) or "rows" not in data or "config" not in data:
                raise ResultsError(f"{upload.name}: not a bench.json (needs 'config' and 'rows')")
        elif path.strip():
            data = _bench(path, stamp(path))
        else:
            st.info("Give a bench.json to see its speed-ups.")
            return
    except (ResultsError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        st.error(str(exc).splitlines()[0])
        return
    cfg = data["config"]
    st.caption(f"Pair `{cfg.get('pair')}`, {cfg.get('num_prompts')} prompts, {cfg.get('max_new_tokens')} new tokens, "
               f"budget {cfg.get('budget')}, {cfg.get('repeats')} repeats; device: {data.get('device', '-')}.")
    frame = bench_frame(data)
    st.altair_chart(charts.grouped_bars(frame, "batch", "speedup_vs_ar", "method", "speed-up over ar (tokens/s)",
                                        y_title="tokens/s over ar", rule=1.0, x_title="max batch"), width="stretch")
    left, right = st.columns(2)
    left.altair_chart(charts.grouped_bars(frame, "batch", "tokens_per_s", "method", "tokens/s", x_title="max batch"),
                      width="stretch")
    right.altair_chart(charts.grouped_bars(frame, "batch", "tau", "method", "tau (tokens per target forward)",
                                           x_title="max batch"), width="stretch")
    cols = [c for c in ("batch_size", "method", "tau", "tokens_per_s", "speedup_vs_ar", "mean_tree_size",
                        "draft_ms_per_step", "verify_ms_per_step", "wall_ms_per_step", "outputs_equal_ar") if c in frame]
    st.dataframe(frame[cols], hide_index=True)


def _load_section() -> None:
    path = st.text_input("A `specgrove load --out` directory (summary.json, requests.csv)",
                         default_path("benchmarks/results/validation-cpu/calibration/load-dynamic-1"), key="ex_load")
    if not path.strip():
        st.info("Give a load run's directory.")
        return
    try:
        summary, requests, info = _run(path, stamp(path))
    except ResultsError as exc:
        st.error(str(exc))
        return
    if info:
        st.caption(", ".join(f"{k}: {v}" for k, v in info.items() if k in ("url", "workload", "num_requests",
                                                                              "temperature", "wall_s", "prompts")))
    results_view.show(summary, requests)


def _tree_section() -> None:
    path = st.text_input("A step trace (`--trace` of generate, bench or serve)",
                         default_path("benchmarks/results/validation-cpu/calibration/dynamic-1.jsonl"), key="ex_trace")
    if not path.strip():
        st.info("Give a trace file; steps that recorded their tree are drawn.")
        return
    try:
        trees = _trees(path, stamp(path))
    except ResultsError as exc:
        st.error(str(exc))
        return
    methods = list(dict.fromkeys(t["method"] or "(unlabelled)" for t in trees))
    method = st.selectbox("Method", methods, key="ex_tree_method") if len(methods) > 1 else methods[0]
    mine = [t for t in trees if (t["method"] or "(unlabelled)") == method]
    pick = st.slider("Recorded request-step", 1, len(mine), 1, key="ex_tree_pick") if len(mine) > 1 else 1
    t = mine[pick - 1]
    cols = st.columns(5)
    facts = (("step", t["step"]), ("request", t["request_id"]), ("tree nodes", len(t["parents"])),
             ("accepted nodes", len(t["accepted"])), ("tokens emitted", t["emitted"]))
    for col, (label, value) in zip(cols, facts):
        col.metric(label, value)
    title = f"{method}: step {t['step']}, request {t['request_id']} (batch {t['batch_size']})"
    st.altair_chart(tree_chart.tree_chart(t["parents"], t["scores"], t["accepted"], title), width="stretch")
    left, right = st.columns(2)
    left.markdown("**Nodes by depth**")
    left.dataframe(tree_chart.per_depth(t["parents"], t["accepted"]), hide_index=True)
    with right:
        st.altair_chart(charts.histogram([len(x["accepted"]) for x in mine], "accepted nodes per step", step=1),
                        width="stretch")
    st.caption(f"{len(mine)} request-steps with trees ({len(trees)} read, the first ones of the file).")


def render() -> None:
    st.title("Executor results")
    bench, load, trees = st.tabs(["Benchmark (bench.json)", "Load run", "Recorded trees"])
    with bench:
        _bench_section()
    with load:
        _load_section()
    with trees:
        _tree_section()
