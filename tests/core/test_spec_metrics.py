"""Speculative-decoding metrics from step traces, on a two-step trace computed by hand."""

import json

import pytest

from specgrove.spec_metrics import node_depths, spec_decode_metrics
from specgrove.trace import RequestShare, StepRecord, summarize


def share(rid, parents, accepted, emitted):
    return RequestShare(rid, 10, len(parents), 0, len(accepted), emitted, tuple(parents),
                        tuple(0.5 for _ in parents), tuple(accepted))


def step(index, shares, draft_ms, verify_ms):
    return StepRecord(index, 0.0, 0.01, len(shares), 0, 0, 1, (1,), draft_ms, verify_ms, 0.0, tuple(shares))


# Step 0: A's tree has depths 1,2,2,3 and accepts nodes 0 (depth 1) and 2 (depth 2);
#         B's tree has depths 1,1,2 and accepts node 1 (depth 1).
# Step 1: A's chain of depths 1,2,3 is accepted whole; C decodes without a tree (AR).
STEPS = [
    step(0, [share(0, (-1, 0, 0, 1), (0, 2), 3), share(1, (-1, -1, 0), (1,), 2)], draft_ms=2.0, verify_ms=4.0),
    step(1, [share(0, (-1, 0, 1), (0, 1, 2), 4), share(2, (), (), 1)], draft_ms=1.0, verify_ms=2.0),
]


def test_node_depths_any_order():
    assert node_depths((-1, 0, 0, 1)).tolist() == [1, 2, 2, 3]
    assert node_depths((1, -1, 0)).tolist() == [2, 1, 3]


def test_golden_two_step_trace():
    m = spec_decode_metrics(STEPS)
    # nodes by depth: 1+2+1 = 4, 2+1+1 = 4, 1+1 = 2; accepted: 1+1+1 = 3, 1+1 = 2, 1
    assert m["acceptance_by_depth"] == pytest.approx([3 / 4, 2 / 4, 1 / 2])
    assert m["acceptance_per_position"] == pytest.approx([3 / 3, 2 / 3, 1 / 3])  # 3 recorded trees
    assert m["accepted_len_hist"] == [1, 1, 1, 1]  # accepted lengths 2, 1, 3, 0
    assert m["mean_accepted_len"] == pytest.approx(1.5)
    assert m["draft_acceptance_rate"] == pytest.approx(6 / 10)
    assert m["draft_ms_per_token"] == pytest.approx(3.0 / 10)  # 10 tokens emitted
    assert m["verify_ms_per_token"] == pytest.approx(6.0 / 10)
    assert m["mean_tree_size"] == pytest.approx(10 / 4)


def test_summarize_keeps_old_keys_and_adds_spec_metrics():
    stats = summarize(STEPS, 10, 0.5)
    assert stats["steps"] == 4 and stats["target_forwards"] == 2 and stats["tau"] == pytest.approx(10 / 4)
    assert stats["acceptance_by_depth"] == pytest.approx([0.75, 0.5, 0.5])
    json.dumps(stats, allow_nan=False)  # JSON as it is (generate --json, bench.json)


def test_empty_and_ar_only():
    m = spec_decode_metrics([])
    assert m["acceptance_by_depth"] == [] and m["mean_accepted_len"] is None and m["draft_ms_per_token"] is None
    m = spec_decode_metrics([step(0, [share(0, (), (), 1)], 0.0, 1.0)])
    assert m["acceptance_by_depth"] == [] and m["draft_acceptance_rate"] is None and m["accepted_len_hist"] == [1]


def test_bench_rows_and_table_carry_the_metrics():
    pytest.importorskip("torch", reason="the bench needs torch (the 'executor' extra)")
    from specgrove.executor.bench import RunResult, aggregate
    from specgrove.executor.bench_report import spec_table

    ar = summarize([step(0, [share(0, (), (), 1)], 0.0, 1.0)], 1, 0.1)
    spec = [summarize(STEPS, 10, 0.5), summarize(STEPS[:1], 5, 0.5)]
    rows = aggregate([RunResult("ar", 1, 0, ar, [[1]]), RunResult("dynamic", 1, 0, spec[0], [[1]]),
                      RunResult("dynamic", 1, 1, spec[1], [[1]])])
    dyn = rows[1]
    # medians over the repeats: (0.75, 0.5, 0.5) and step 0 alone (2/3, 1/3, 0)
    assert dyn["acceptance_by_depth"] == pytest.approx([(0.75 + 2 / 3) / 2, (0.5 + 1 / 3) / 2, 0.25])
    assert dyn["accepted_len_hist"] == [1, 2, 2, 1]  # summed over the repeats
    assert dyn["mean_accepted_len"] == pytest.approx((1.5 + 1.5) / 2)
    table = "\n".join(spec_table(rows))
    assert "| 1 | dynamic | 1.50 |" in table and "| 1 | ar |" not in table
    assert "| d1 | d2 | d3 | d4 | d5 | d6 |" in table  # depths 1..6 as columns
    assert spec_table([{"batch_size": 1, "method": "ar"}]) == []
