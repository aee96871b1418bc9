"""Serving statistics as vLLM's benchmark_serving reports them (TTFT, TPOT, ITL, output and
total token throughput), from hand-made client timestamps."""

import asyncio
import json
import math

import pytest

httpx = pytest.importorskip("httpx", reason="load needs the 'serve' extra")

from specgrove.serve.load import Outcome, _one, records, stats_table  # noqa: E402
from specgrove.sim.metrics import chunk_gaps, summarise, weighted_percentiles  # noqa: E402
from specgrove.sim.scenario import SloSpec  # noqa: E402
from specgrove.sim.workload import Arrival  # noqa: E402

ARRIVALS = [Arrival(0.0, 10, 4), Arrival(1.0, 20, 3), Arrival(1.5, 5, 2)]
OUTCOMES = [
    Outcome(0.0, 10, first_token_s=0.5, finish_s=1.1, num_tokens=4, queued_s=0.1, num_steps=3, chunk_s=[0.5, 0.7, 1.0]),
    Outcome(1.0, 20, first_token_s=1.2, finish_s=2.0, num_tokens=3, queued_s=0.0, num_steps=2, chunk_s=[1.2, 1.6]),
    Outcome(1.5, 5, rejected=True, error="HTTP 503: busy"),
]


def test_chunk_gaps_and_weighted_percentiles():
    assert chunk_gaps([0.5, 0.7, 1.0]).tolist() == pytest.approx([0.2, 0.3])
    assert chunk_gaps([0.5]).tolist() == []
    p = weighted_percentiles([3.0, 1.0, 2.0], [2, 1, 1])  # 1, 2, 3, 3
    assert p == pytest.approx({"mean": 2.25, "p50": 2.0, "p90": 3.0, "p99": 3.0})
    assert weighted_percentiles([], [])["mean"] is None


def test_summary_from_hand_made_timestamps():
    recs = records(ARRIVALS, OUTCOMES)
    assert recs[0].chunk_gaps_s == pytest.approx((0.2, 0.3)) and recs[2].chunk_gaps_s == ()
    s = summarise(recs, SloSpec(), 2.0, 2.0, {})
    assert s["num_finished"] == 2 and s["span_s"] == pytest.approx(2.0)
    assert s["ttft_s"]["mean"] == pytest.approx(0.35) and s["ttft_s"]["p50"] == pytest.approx(0.35)
    assert s["tpot_s"]["mean"] == pytest.approx((0.6 / 3 + 0.8 / 2) / 2)
    assert s["itl_s"]["mean"] == pytest.approx(0.3) and s["itl_s"]["p50"] == pytest.approx(0.3)
    assert s["itl_s"]["p99"] == pytest.approx(0.398)  # linear between 0.3 and 0.4
    assert s["output_throughput_tokens_per_s"] == s["throughput_tokens_per_s"] == pytest.approx(7 / 2)
    assert s["total_throughput_tokens_per_s"] == pytest.approx((10 + 20 + 7) / 2)  # prompt + output, finished
    table = stats_table(s)
    assert "Total token throughput (tok/s):" in table and "Median ITL (ms):" in table
    assert "300.00" in table  # the ITL mean, in ms


def test_client_times_only_chunks_with_text():
    events = [{"choices": [{"text": "a"}]}, {"choices": [{"text": ""}]}, {"choices": [{"text": "bc"}]},
              {"choices": [{"text": ""}], "usage": {"prompt_tokens": 3},
               "specgrove": {"num_tokens": 3, "num_steps": 2, "queued_s": 0.0}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body))

    async def go():
        out = Outcome(0.0, 3)
        async with httpx.AsyncClient(transport=transport) as client:
            await _one(client, "http://test", {}, 0.0, out)
        return out

    out = asyncio.run(go())
    assert not out.error and out.num_tokens == 3 and len(out.chunk_s) == 2
    assert out.first_token_s == out.chunk_s[0] and not math.isnan(out.finish_s)
