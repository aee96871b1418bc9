"""Interactive charts (Altair, which Streamlit draws with Vega-Lite): CDFs, lines, bars.

Each function takes plain data (a DataFrame or rows) and returns an ``alt.Chart``; the pages
hand it to ``st.altair_chart``. Tooltips carry the exact values.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))
CDF_POINTS = 400  # an empirical CDF is drawn through this many quantiles at most


def ecdf_frame(values, **labels) -> pd.DataFrame:
    """The empirical CDF of ``values`` (NaNs dropped) as (value, fraction) rows, thinned to at
    most ``CDF_POINTS`` quantiles; ``labels`` become constant columns (the series' name)."""
    v = np.sort(np.asarray(values, dtype=float))
    v = v[~np.isnan(v)]
    if not len(v):
        return pd.DataFrame(columns=["value", "fraction", *labels])
    fraction = np.arange(1, len(v) + 1) / len(v)
    if len(v) > CDF_POINTS:
        idx = np.unique(np.linspace(0, len(v) - 1, CDF_POINTS).round().astype(int))
        v, fraction = v[idx], fraction[idx]
    return pd.DataFrame({"value": v, "fraction": fraction, **labels})


def cdf_chart(frame: pd.DataFrame, title: str, unit: str = "ms", color: str | None = None,
              dash: str | None = None, log_x: bool = False) -> alt.Chart:
    """Step lines of a CDF frame (``ecdf_frame`` rows, ``value`` in seconds shown in ``unit``);
    one line per ``color`` (and ``dash``) value."""
    scale = {"ms": 1e3, "s": 1.0}[unit]
    frame = frame.assign(shown=frame["value"] * scale)
    enc = {"x": alt.X("shown:Q", title=f"{title} ({unit})", scale=alt.Scale(type="log") if log_x else alt.Undefined),
           "y": alt.Y("fraction:Q", title="fraction of requests", scale=alt.Scale(domain=[0, 1])),
           "tooltip": [alt.Tooltip("shown:Q", title=unit, format=".3f"), alt.Tooltip("fraction:Q", format=".3f")]}
    if color:
        enc["color"] = alt.Color(f"{color}:N", title=color)
        enc["tooltip"].append(color)
    if dash:
        enc["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=dash)
        enc["tooltip"].append(dash)
    return alt.Chart(frame, title=f"{title} CDF").mark_line(interpolate="step-after").encode(**enc).properties(height=260)


def latency_cdfs(requests: pd.DataFrame, group: str | None = None) -> list[alt.Chart]:
    """TTFT, TPOT and E2E CDFs of per-request rows (finished requests only)."""
    charts = []
    for col, name in LATENCIES:
        if group:
            frames = [ecdf_frame(g[col], **{group: str(k)}) for k, g in requests.groupby(group, sort=False)]
            frame = pd.concat(frames, ignore_index=True) if frames else ecdf_frame([])
        else:
            frame = ecdf_frame(requests[col])
        charts.append(cdf_chart(frame, name, color=group))
    return charts


def histogram(values, title: str, step: float | None = None) -> alt.Chart:
    frame = pd.DataFrame({title: np.asarray(values, dtype=float)}).dropna()
    binning = alt.Bin(step=step) if step else alt.Bin(maxbins=30)
    return (alt.Chart(frame, title=f"{title} distribution").mark_bar()
            .encode(x=alt.X(f"{title}:Q", bin=binning, title=title), y=alt.Y("count():Q", title="requests"),
                    tooltip=[alt.Tooltip(f"{title}:Q", bin=binning), "count():Q"]).properties(height=260))


def lines(frame: pd.DataFrame, x: str, y: str, color: str | None, title: str, x_title: str | None = None,
          y_title: str | None = None, log_y: bool = False, x_type: str = "Q") -> alt.Chart:
    enc = {"x": alt.X(f"{x}:{x_type}", title=x_title or x),
           "y": alt.Y(f"{y}:Q", title=y_title or y, scale=alt.Scale(type="log") if log_y else alt.Undefined),
           "tooltip": [x, alt.Tooltip(f"{y}:Q", format=".4g")]}
    if color:
        enc["color"] = alt.Color(f"{color}:N", title=color)
        enc["tooltip"].append(color)
    return alt.Chart(frame, title=title).mark_line(point=True).encode(**enc).properties(height=280)


def grouped_bars(frame: pd.DataFrame, x: str, y: str, color: str, title: str, y_title: str | None = None,
                 rule: float | None = None, x_title: str | None = None) -> alt.Chart | alt.LayerChart:
    """Bars of ``y`` per ``x`` group, side by side per ``color``; a horizontal ``rule`` (e.g.
    1.0 for a speed-up) when given."""
    bars = alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{x}:N", title=x_title or x, sort=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{color}:N", sort=None),
        y=alt.Y(f"{y}:Q", title=y_title or y), color=alt.Color(f"{color}:N", title=color, sort=None),
        tooltip=[x, color, alt.Tooltip(f"{y}:Q", format=".3f")]).properties(height=280)
    if rule is None:
        return bars.properties(title=title)
    line = alt.Chart(pd.DataFrame({"y": [rule]})).mark_rule(color="black").encode(y="y:Q")
    return alt.layer(bars, line, title=title)


def utilisation_chart(frame: pd.DataFrame) -> alt.Chart:
    """Busy fractions over simulated time: one line per resource."""
    return (alt.Chart(frame, title="utilisation over time").mark_line(interpolate="step-after")
            .encode(x=alt.X("time_s:Q", title="simulated time (s)"),
                    y=alt.Y("busy:Q", title="busy fraction", scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("resource:N", title="resource"),
                    tooltip=[alt.Tooltip("time_s:Q", format=".2f"), "resource", alt.Tooltip("busy:Q", format=".3f")])
            .properties(height=260))


def quantile_chart(frame: pd.DataFrame, title: str, unit: str = "ms") -> alt.Chart:
    """Recorded quantiles (``value`` seconds at ``fraction``) as points joined by lines, one
    line per policy and world: what a summary keeps of a CDF."""
    scale = {"ms": 1e3, "s": 1.0}[unit]
    frame = frame.assign(shown=frame["value"] * scale)
    return (alt.Chart(frame, title=f"{title}: recorded quantiles").mark_line(point=True)
            .encode(x=alt.X("shown:Q", title=f"{title} ({unit})"),
                    y=alt.Y("fraction:Q", title="fraction of requests", scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("policy:N"), strokeDash=alt.StrokeDash("world:N"),
                    tooltip=["policy", "world", alt.Tooltip("shown:Q", title=unit, format=".3f"), "fraction"])
            .properties(height=260))
