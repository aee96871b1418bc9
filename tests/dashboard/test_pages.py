"""Every dashboard page under Streamlit's ``AppTest``: the elements rendered and their values.

The what-if page's metrics must equal ``run_scenario``'s for the same scenario, a bad field
must show its message right under its widget (never a traceback), and each results page must
draw its charts from files in the formats the commands write.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest  # noqa: E402

from specgrove.dashboard import scenario_form  # noqa: E402
from specgrove.sim.api import run_scenario  # noqa: E402

from dash_helpers import REPO  # noqa: E402

TIMEOUT = 120


def page(name: str) -> AppTest:
    return AppTest.from_string(f"from specgrove.dashboard.{name} import render\nrender()", default_timeout=TIMEOUT)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected_headline(summary: dict) -> dict[str, str]:
    """What the page must show, formatted here independently of the page's code."""
    return {"Throughput (tokens/s)": f"{summary['throughput_tokens_per_s']:.1f}",
            "Throughput (req/s)": f"{summary['throughput_requests_per_s']:.2f}",
            "Goodput (req/s)": f"{summary['goodput_requests_per_s']:.2f}",
            "SLO attainment": f"{summary['slo_attainment']:.1%}", "Mean tau": f"{summary['mean_tau']:.2f}",
            "Finished": f"{summary['num_finished']} / {summary['num_requests']}"}


def column_of(at: AppTest, kind: str, key: str):
    """The column block holding the widget ``key``, and the widget's index among its children."""
    for col in at.columns:
        kids = list(col.children.values())
        for i, node in enumerate(kids):
            if getattr(node, "type", None) == kind and getattr(node, "key", None) == key:
                return kids, i
    raise AssertionError(f"no {kind} with key {key!r}")


def test_app_entry_runs_the_what_if_page():
    at = AppTest.from_file(str(REPO / "specgrove/dashboard/app.py"), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert at.title[0].value.startswith("What-if")


def test_whatif_metrics_equal_run_scenario():
    at = page("page_whatif").run()
    no_exception(at)
    at.number_input(key="wi:workload.rate").set_value(6.0)
    at.selectbox(key="wi:policies.tree").set_value("static")
    at.number_input(key="wi:duration_s").set_value(10.0)
    at.run()
    no_exception(at)
    at.button(key="wi_run_button").click().run()
    no_exception(at)
    assert not at.error
    data = scenario_form.default_data()
    data["workload"]["rate"], data["policies"]["tree"], data["duration_s"] = 6.0, "static", 10.0
    summary = run_scenario(data).summary
    shown = metrics(at)
    for label, value in expected_headline(summary).items():
        assert shown[label] == value, label
    assert shown["target GPUs"] == f"{summary['utilisation']['gpu']:.1%}"
    # Three latency CDFs, the tau histogram and utilisation over time.
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    for title in ("TTFT CDF", "TPOT CDF", "E2E CDF", "tau distribution", "utilisation over time"):
        assert title in titles
    labels = [b.label for b in at.get("download_button")]
    assert {"Download scenario TOML", "Download the results (zip)", "Download this run's TOML"} <= set(labels)


@pytest.mark.parametrize("kind, key, value, message", [
    ("number_input", "wi:workload.rate", 0.0, "workload.rate: must be > 0"),
    ("number_input", "wi:deployment.tp", 3, "deployment.tp: 3 does not divide gpus_per_node 8"),
    ("number_input", "wi:deployment.num_replicas", 0, "deployment.num_replicas: Input should be greater than or equal to 1"),
    ("text_input", "wi:policies.tree_options", "{ topk = ", "policies.tree_options: not a TOML inline table"),
    ("text_input", "wi:slo.e2e_s", "soon", "slo.e2e_s: not a number: 'soon'"),
])
def test_bad_field_shows_its_message_under_it(kind, key, value, message):
    at = page("page_whatif").run()
    getattr(at, kind)(key=key).set_value(value).run()
    no_exception(at)
    kids, i = column_of(at, kind, key)
    after = kids[i + 1]
    assert after.type == "error"
    assert after.value.startswith(message)
    assert len(at.error) == 1
    assert at.button(key="wi_run_button").disabled


def test_cross_field_message_and_recovery():
    at = page("page_whatif").run()
    at.number_input(key="wi:deployment.num_replicas").set_value(9).run()  # 9 replicas > 8 GPUs
    kids, i = column_of(at, "number_input", "wi:deployment.num_replicas")
    assert kids[i + 1].value.startswith("deployment.num_replicas: 9 replicas need 9 GPUs")
    at.number_input(key="wi:deployment.num_replicas").set_value(2).run()
    assert not at.error and not at.button(key="wi_run_button").disabled


def test_load_example_fills_the_form():
    at = page("page_whatif").run()
    at.selectbox(key="wi_example").set_value("demo_cpu.toml").run()
    next(b for b in at.button if b.label == "Load example").click().run()
    no_exception(at)
    assert at.selectbox(key="wi:cluster.gpu").value == "cpu-2core"
    assert at.number_input(key="wi:deployment.max_batch").value == 8
    assert at.text_input(key="wi:policies.tree_options").value == "{ topk = 4, frontier = 4, max_depth = 5 }"


def test_sweep_page_lines_and_speedup_bars():
    at = page("page_sweep").run()
    no_exception(at)
    at.text_input(key="sw_v1").set_value("2,6")
    at.text_input(key="sw_v2").set_value("static,dynamic")
    at.run()
    at.button(key="sw_run").click().run()
    no_exception(at)
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert "p50 E2E latency (s) against workload.rate" in titles
    assert "throughput against workload.rate" in titles
    assert any(t and t.startswith("speed-up in p50 E2E latency") for t in titles)
    table = at.dataframe[0].value
    assert len(table) == 4
    base = scenario_form.default_data()
    base["workload"]["rate"], base["policies"]["tree"], base["policies"]["tree_options"] = 6, "dynamic", {}
    summary = run_scenario(base).summary
    row = table[(table["workload.rate"] == 6) & (table["policies.tree"] == "dynamic")].iloc[0]
    assert row["throughput (tokens/s)"] == pytest.approx(summary["throughput_tokens_per_s"])


def test_sweep_page_bad_field():
    at = page("page_sweep").run()
    at.text_input(key="sw_f1").set_value("workload.rat").run()
    no_exception(at)
    assert at.error[0].value.startswith("workload.rat: no such field")
    assert at.button(key="sw_run").disabled


def test_executor_page_bench_load_and_trees(sim_run):
    run_dir, trace, result = sim_run
    at = page("page_executor").run()
    at.text_input(key="ex_bench").set_value(str(REPO / "benchmarks/results/demo-cpu"))
    at.text_input(key="ex_load").set_value(str(run_dir))
    at.text_input(key="ex_trace").set_value(str(trace))
    at.run()
    no_exception(at)
    assert not at.error
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert "speed-up over ar (tokens/s)" in titles
    shown = metrics(at)
    for label, value in expected_headline(result.summary).items():
        assert shown[label] == value, label
    tree_titles = [t for t in titles if isinstance(t, str) and t.startswith("dynamic: step")]
    assert tree_titles
    assert int(shown["tree nodes"]) > 0 and int(shown["tokens emitted"]) == int(shown["accepted nodes"]) + 1


def test_executor_page_bad_paths(tmp_path):
    at = page("page_executor").run()
    at.text_input(key="ex_bench").set_value(str(tmp_path / "missing"))
    at.text_input(key="ex_trace").set_value(str(tmp_path))
    at.run()
    no_exception(at)
    messages = [e.value for e in at.error]
    assert any("does not exist" in m for m in messages)
    assert any("has no trace.jsonl" in m for m in messages)


def test_validation_page_ranking_and_cdfs(tmp_path):
    at = page("page_validation")
    at.run()
    at.text_input(key="va_path").set_value(str(REPO / "benchmarks/results/validation-cpu")).run()
    no_exception(at)
    data = json.loads((REPO / "benchmarks/results/validation-cpu/validation.json").read_text())
    first = f"{data['loads'][0]:g}"
    table = at.dataframe[0].value
    assert list(table["real"]) == data["ranking"][first]["real"]
    assert list(table["simulated"]) == data["ranking"][first]["sim"]
    assert metrics(at)["Kendall tau (real vs simulated order)"] == f"{data['ranking'][first]['kendall_tau']:.2f}"
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert "TTFT: recorded quantiles" in titles
    # With per-request rows beside validation.json, full CDFs are drawn.
    copy_dir = tmp_path / "v"
    shutil.copytree(REPO / "benchmarks/results/validation-cpu", copy_dir,
                    ignore=shutil.ignore_patterns("*.png", "calibration"))
    rows = REPO / "benchmarks/results/validation-cpu/calibration/load-ar-1/requests.csv"
    for world in ("real", "sim"):
        shutil.copy(rows, copy_dir / f"requests_load{first}_ar_{world}.csv")
    at.text_input(key="va_path").set_value(str(copy_dir)).run()
    no_exception(at)
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert "TTFT CDF" in titles


def test_replay_page_ranks_variants(replay_dir, sim_run):
    at = page("page_replay").run()
    at.text_input(key="rp_path").set_value(str(replay_dir))
    at.text_input(key="rp_real").set_value(str(sim_run[0]))
    at.run()
    no_exception(at)
    table = at.dataframe[0].value
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert list(table["mean E2E (s)"]) == sorted(table["mean E2E (s)"])
    assert len(charts(at)) == 4


def test_study_page(study_dir, monkeypatch):
    monkeypatch.setenv("SPECGROVE_STUDY_DIR", str(study_dir))
    at = page("page_study").run()
    no_exception(at)
    assert not at.error
    assert at.text_input(key="st_path").value == str(study_dir)
    assert metrics(at)["Run time"] == "1 s"
    titles = [json.loads(c.proto.spec).get("title") for c in charts(at)]
    assert "code prompts, temperature 0: tokens/s over ar" in titles
    assert "llama-2-70b/7b: mean end-to-end latency" in titles
    at.text_input(key="st_path").set_value(str(study_dir / "nope")).run()
    assert "does not exist" in at.error[0].value


def test_scenario_toml_round_trip():
    import tomllib

    from specgrove.dashboard.data import to_toml
    from specgrove.sim.build import load_scenario, parse_scenario

    for name in ("demo_cpu.toml", "llama70b_4xtp4.toml", "trace_replay.toml"):
        scenario = load_scenario(REPO / "examples" / name)
        assert parse_scenario(tomllib.loads(to_toml(copy.deepcopy(scenario.model_dump())))) == scenario


def test_uploaded_toml_is_checked_field_by_field():
    from specgrove.dashboard.page_whatif import parse_upload

    text = (REPO / "examples/demo_cpu.toml").read_bytes()
    data, error = parse_upload("demo.toml", text)
    assert error is None and data["cluster"]["gpu"] == "cpu-2core"
    assert parse_upload("x.toml", b"rate = = 1")[1].startswith("x.toml: not valid TOML")
    assert parse_upload("x.toml", b"[workload]\nrate = 0\n")[1] == "x.toml: workload.rate: must be > 0"
    assert parse_upload("x.toml", b"\xff\xfe")[1] == "x.toml: not UTF-8 text"
