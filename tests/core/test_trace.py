"""The step-trace format (schema v1): what the writer writes the reader gives back, and bad
lines are named by file and line."""

import json

import pytest

from specgrove.trace import (
    TRACE_VERSION,
    Labels,
    PrefillRecord,
    RequestShare,
    RequestTimes,
    StepRecord,
    StepTraceError,
    TraceWriter,
    read_trace,
    summarize,
    to_json_dict,
)


def share(request_id=0, emitted=3, **changes):
    base = dict(request_id=request_id, context_tokens=17, tree_size=3, depth=2, accepted_len=emitted - 1,
                emitted=emitted, parents=(-1, 0, -1), scores=(0.5, 0.25, 0.125), accepted_nodes=(0, 1)[: emitted - 1])
    base.update(changes)
    return RequestShare(**base)


def step(index=0, shares=(share(),), **changes):
    base = dict(step=index, start_s=1.0, end_s=1.01, batch_size=len(shares), tokens_in_forward=9,
                context_tokens=40, draft_rounds=2, round_widths=(2, 3), draft_ms=1.5, verify_ms=2.25,
                other_ms=0.5, requests=tuple(shares))
    base.update(changes)
    return StepRecord(**base)


def test_round_trip_with_labels(tmp_path):
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, method="dynamic+greedy-global", max_batch=4) as trace:
        trace.record(PrefillRecord(0, 0.5, 0.6, 2, 30, 3.0, 1.0))
        trace.record(step(0, (share(0), share(1, emitted=1, parents=(), scores=(), tree_size=0, depth=0))))
        trace.labels["repeat"] = 1
        trace.record(RequestTimes(0, 12, 5, 0.1, 0.5, 0.6, 1.2, "code"))
    got = read_trace(path)
    assert got == trace.trace
    assert got.steps[0].labels == Labels("dynamic+greedy-global", 4, 0)
    assert got.requests[0].labels.repeat == 1 and got.requests[0].domain == "code"
    assert got.steps[0].requests[0].parents == (-1, 0, -1) and got.steps[0].requests[1].parents == ()
    line = json.loads(path.read_text().splitlines()[1])
    assert line["v"] == TRACE_VERSION and line["kind"] == "step" and line["method"] == "dynamic+greedy-global"


def test_summarize_counts_forwards_and_request_steps():
    stats = summarize([step(0, (share(0), share(1, emitted=1))), step(1, (share(0, emitted=4),))], 8, 0.5)
    assert stats["steps"] == 3 and stats["target_forwards"] == 2
    assert stats["tau"] == pytest.approx((3 + 1 + 4) / 3)
    assert stats["draft_ms"] == pytest.approx(3.0) and stats["tokens_per_s"] == 16.0


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d.pop("requests"), "missing field 'requests'"),
    (lambda d: d.update(v=99), "trace schema version 99; this reader reads 1"),
    (lambda d: d.update(kind="tea"), "unknown kind 'tea'; valid: step, prefill, request"),
    (lambda d: d.update(round_widths="abc"), "round_widths must be a list of numbers"),
    (lambda d: d.update(batch_size="3"), "batch_size must be int, got '3'"),
    (lambda d: d.update(draft_ms=None), "draft_ms must be float, got None"),
    (lambda d: d["requests"][0].pop("emitted"), "requests[0]: missing field 'emitted'"),
    (lambda d: d["requests"][0].update(parents=[None]), "requests[0]: parents must be a list of numbers"),
])
def test_bad_lines_are_named(tmp_path, mutate, message):
    good = to_json_dict(step())
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(StepTraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}:2: {message}"


def test_unreadable_files(tmp_path):
    with pytest.raises(StepTraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.jsonl")
    (tmp_path / "b.jsonl").write_bytes(b"\xff\xfe{")
    with pytest.raises(StepTraceError, match="not UTF-8"):
        read_trace(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text("{nope\n")
    with pytest.raises(StepTraceError, match="c.jsonl:1: not valid JSON"):
        read_trace(tmp_path / "c.jsonl")
