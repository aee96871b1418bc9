"""What-if: build a scenario in a form (or from a TOML), simulate it, see and download results."""

from __future__ import annotations

import copy
import io
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from specgrove.dashboard import results_view, scenario_form
from specgrove.dashboard.data import to_toml
from specgrove.dashboard.runner import run_with_progress
from specgrove.sim.scenario import ScenarioError, read_scenario_file, validate_fields

RUN = "wi_run"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _start_from() -> None:
    """Load an example scenario or an uploaded TOML into the form."""
    left, right = st.columns(2)
    examples = sorted(EXAMPLES.glob("*.toml")) if EXAMPLES.is_dir() else []
    with left:
        choice = st.selectbox("Start from an example", ["(keep the form)", *[p.name for p in examples]],
                              key="wi_example")
        if st.button("Load example", disabled=choice == "(keep the form)"):
            path = EXAMPLES / choice
            try:
                scenario_form.load(validate_fields(read_scenario_file(path), path.parent).model_dump())
            except ScenarioError as exc:
                st.error(str(exc))
            else:
                st.rerun()
        if st.button("Reset to the default scenario"):
            scenario_form.load(scenario_form.default_data())
            st.rerun()
    with right:
        upload = st.file_uploader("...or upload a scenario TOML", type=["toml"], key="wi_upload")
        if upload is not None and st.session_state.get("wi_upload_id") != upload.file_id:
            data, error = parse_upload(upload.name, upload.getvalue())
            if error:
                st.error(error)
            else:
                st.session_state["wi_upload_id"] = upload.file_id
                scenario_form.load(data)
                st.rerun()


def parse_upload(name: str, raw: bytes) -> tuple[dict | None, str | None]:
    """An uploaded scenario's fields (validated one by one; the form shows cross-field errors
    under their widgets), or one line saying why it cannot be loaded."""
    try:
        return validate_fields(tomllib.loads(raw.decode("utf-8"))).model_dump(), None
    except UnicodeDecodeError:
        return None, f"{name}: not UTF-8 text"
    except tomllib.TOMLDecodeError as exc:
        return None, f"{name}: not valid TOML: {exc}"
    except ScenarioError as exc:
        return None, f"{name}: {exc}"


def _run(data: dict) -> None:
    bar = st.progress(0.0, text="starting")

    def progress(fraction: float | None, text: str) -> None:
        bar.progress(0.0 if fraction is None else min(max(fraction, 0.0), 1.0), text=text)

    try:
        run = run_with_progress(copy.deepcopy(data), progress)
    except ScenarioError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # a failed run is one line on the page, not a traceback
        st.error(f"the simulation failed: {type(exc).__name__}: {exc}")
        return
    bar.empty()
    st.session_state[RUN] = {"data": copy.deepcopy(data), "run": run, "zip": _zip(run, data)}


def _zip(run, data: dict) -> bytes:
    """summary.json, requests.csv, scenario.json, run.json (as ``specgrove sim --out`` writes
    them) and scenario.toml, zipped."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        run.result.write(tmp)
        for f in sorted(Path(tmp).iterdir()):
            z.write(f, f.name)
        z.writestr("scenario.toml", to_toml(data))
    return buf.getvalue()


def _results() -> None:
    done = st.session_state.get(RUN)
    if not done:
        return
    result, data = done["run"].result, done["data"]
    st.subheader(f"Results: {data['name']}")
    if data != st.session_state.get(scenario_form.DATA):
        st.caption("The form has changed since this run; these are the results of the scenario as it ran.")
    st.caption(f"Simulated {result.summary['sim_end_s']:.1f} s in {result.run['wall_s']:.2f} s of wall time.")
    results_view.show(result.summary, pd.DataFrame(result.requests), done["run"].utilisation)
    cols = st.columns(3)
    name = data["name"] or "scenario"
    cols[0].download_button("Download this run's TOML", to_toml(data), file_name=f"{name}.toml",
                            mime="application/toml", key="wi_dl_run_toml")
    cols[1].download_button("Download the results (zip)", done["zip"], file_name=f"{name}-results.zip",
                            mime="application/zip", key="wi_dl_zip")
    cols[2].download_button("Download requests.csv", pd.DataFrame(result.requests).to_csv(index=False),
                            file_name=f"{name}-requests.csv", mime="text/csv", key="wi_dl_csv")


def render() -> None:
    st.title("What-if: simulate a serving scenario")
    st.caption("Every field is the simulator's own (docs/simulator.md); the whole scenario is validated as you "
               "edit, and a bad field shows why under it.")
    _start_from()
    data, errors, other = scenario_form.sync()
    if other:
        st.error(other)
    scenario_form.render(data, errors)
    bad = bool(errors or other)
    cols = st.columns([1, 1, 2])
    clicked = cols[0].button("Run simulation", type="primary", disabled=bad, key="wi_run_button")
    if not bad:
        cols[1].download_button("Download scenario TOML", to_toml(data), file_name=f"{data['name'] or 'scenario'}.toml",
                                mime="application/toml", key="wi_dl_toml")
    if clicked:
        _run(data)
    _results()
