"""Replay: ``specgrove replay``'s output, a recorded real run re-simulated under other
policies: the variants ranked, and the real run's CDFs against each variant's quantiles."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from specgrove.dashboard import charts
from specgrove.dashboard.data import ResultsError, load_run, load_sweep, stamp

LATENCY_KEYS = {"TTFT": "ttft_s", "TPOT": "tpot_s", "E2E": "e2e_s"}
QS = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@st.cache_data(show_spinner=False, max_entries=4)
def _sweep(path: str, _stamp: float) -> tuple[list[dict], list[dict]]:
    return load_sweep(path)


@st.cache_data(show_spinner=False, max_entries=4)
def _run(path: str, _stamp: float):
    return load_run(path)


def label(vary: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in vary.items()) or "base"


def ranking(variants: list[dict]) -> pd.DataFrame:
    """Variants ranked by mean end-to-end latency (lower is better), with headline metrics."""
    rows = [{"variant": label(v["vary"]), "mean E2E (s)": v["summary"]["e2e_s"]["mean"],
             "p99 E2E (s)": v["summary"]["e2e_s"]["p99"], "p50 TPOT (ms)": _ms(v["summary"]["tpot_s"]["p50"]),
             "tokens/s": v["summary"]["throughput_tokens_per_s"], "mean tau": v["summary"]["mean_tau"]}
            for v in variants]
    frame = pd.DataFrame(rows).sort_values("mean E2E (s)", na_position="last", kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def _ms(v):
    return None if v is None else v * 1e3


def sim_quantiles(variants: list[dict], key: str) -> pd.DataFrame:
    rows = [{"value": v["summary"][key][q], "fraction": f, "series": f"{label(v['vary'])} (sim)"}
            for v in variants for q, f in QS if v["summary"][key].get(q) is not None]
    return pd.DataFrame(rows, columns=["value", "fraction", "series"])


def render() -> None:
    st.title("Replay: a recorded run under other policies")
    path = st.text_input("A `specgrove replay --out` directory (sweep.json)", "", key="rp_path")
    real_path = st.text_input("The replayed `load` run's directory (requests.csv), to compare with", "", key="rp_real")
    if not path.strip():
        st.info("Give a replay directory: `specgrove replay RUN_DIR --scenario S.toml --vary ... --out DIR`.")
        return
    try:
        variants, failed = _sweep(path, stamp(path))
        real = _run(real_path, stamp(real_path)) if real_path.strip() else None
    except ResultsError as exc:
        st.error(str(exc))
        return
    for v in failed:
        st.warning(f"variant {label(v['vary'])} failed: {v.get('error', 'no summary')}")
    frame = ranking(variants)
    st.markdown("**Variants ranked by mean end-to-end latency** (lower is better)")
    st.dataframe(frame, hide_index=True)
    st.altair_chart(charts.grouped_bars(frame.assign(world="sim"), "variant", "mean E2E (s)", "world",
                                        "mean end-to-end latency per variant"), width="stretch")
    cols = st.columns(3)
    for col, (name, key) in zip(cols, LATENCY_KEYS.items()):
        sim = sim_quantiles(variants, key)
        layers = [charts.quantile_chart(sim.rename(columns={"series": "policy"}).assign(world="sim"), name)]
        if real is not None:
            real_frame = charts.ecdf_frame(real[1][key], policy="real run", world="real")
            layers.append(charts.cdf_chart(real_frame, name, color="policy", dash="world"))
        col.altair_chart(layers[0] if len(layers) == 1 else (layers[0] + layers[1]), width="stretch")
    if real is not None:
        s = real[0]
        st.caption(f"Real run: {s['num_finished']} requests, {s['throughput_tokens_per_s']:.1f} tokens/s, "
                   f"mean E2E {s['e2e_s']['mean']:.3f} s (solid: its full CDF; points: each variant's p50/p90/p99).")
