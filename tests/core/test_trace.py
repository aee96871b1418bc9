"""The step-trace format: what the writer writes the reader gives back, and bad lines are
named by file and line."""

import json

import pytest

from specgrove.trace import StepRecord, StepTraceError, TraceWriter, read_trace, summarize


def record(step=0, request_id=0, **changes):
    base = dict(request_id=request_id, step=step, batch_size=2, tokens_in_forward=9,
                context_tokens=17, tree_size=3, depth=2, parents=(-1, 0, -1), draft_rounds=2,
                accepted_len=2, emitted=3, draft_ms=1.5, verify_ms=2.25)
    base.update(changes)
    return StepRecord(**base)


def test_round_trip_with_labels(tmp_path):
    path = tmp_path / "t.jsonl"
    with TraceWriter(path, method="dynamic+greedy-global", max_batch=4) as trace:
        trace.record(record(0, 0))
        trace.labels["repeat"] = 1
        trace.record(record(0, 1, parents=(), tree_size=0, depth=0, accepted_len=0, emitted=1))
    got = read_trace(path)
    assert got == trace.records
    assert got[0].method == "dynamic+greedy-global" and got[0].repeat == 0 and got[1].repeat == 1
    assert got[0].parents == (-1, 0, -1) and got[1].parents == ()


def test_summarize_counts_steps_once_per_batch():
    stats = summarize([record(0, 0), record(0, 1, emitted=1), record(1, 0, emitted=4)], 8, 0.5)
    assert stats["steps"] == 3 and stats["target_forwards"] == 2
    assert stats["tau"] == pytest.approx((3 + 1 + 4) / 3)
    assert stats["draft_ms"] == pytest.approx(3.0) and stats["tokens_per_s"] == 16.0


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), "t.jsonl:2: unknown field 'extra'"),
    (lambda d: d.pop("parents"), "t.jsonl:2: missing field 'parents'"),
    (lambda d: d.update(parents="abc"), "t.jsonl:2: parents must be a list of integers"),
    (lambda d: d.update(tree_size="3"), "t.jsonl:2: tree_size must be int, got '3'"),
    (lambda d: d.update(draft_ms=None), "t.jsonl:2: draft_ms must be float, got None"),
])
def test_bad_lines_are_named(tmp_path, mutate, message):
    good = record().to_json_dict()
    bad = dict(good)
    mutate(bad)
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(StepTraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{path}:2: {message.split(': ', 1)[1]}"


def test_unreadable_files(tmp_path):
    with pytest.raises(StepTraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.jsonl")
    (tmp_path / "b.jsonl").write_bytes(b"\xff\xfe{")
    with pytest.raises(StepTraceError, match="not UTF-8"):
        read_trace(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text("{nope\n")
    with pytest.raises(StepTraceError, match="c.jsonl:1: not valid JSON"):
        read_trace(tmp_path / "c.jsonl")
