"""``specgrove serve`` as a user runs it: a real process on 127.0.0.1, real clients (the
``openai`` package, httpx for raw SSE), greedy outputs checked against ``ar`` token for token."""

import pytest

pytest.importorskip("torch", reason="the server needs torch (the 'executor' extra)")
pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
openai = pytest.importorskip("openai", reason="the tests use the openai client (the 'dev' extra)")

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
from server_proc import metric, start, stop

from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.loading import DEMO_DIR

PROMPTS = ["def binary_search(items, target):", "import os\nimport sys\n", "class Point:\n    def __init__(self",
           "for i in range(10):", "# Copyright", "return self._", "with open(path) as f:", "try:\n    import"]


def ar_reference(pair, prompt_ids, lengths):
    engine = build_engine(pair.target, pair.draft, EngineConfig(method="ar", budget=0, max_batch=16,
                                                                eos_token_id=pair.tokenizer.eos_token_id))
    ids = [engine.add_request(p, n) for p, n in zip(prompt_ids, lengths)]
    out = engine.run()
    return [out[i] for i in ids]


def test_openai_client_completes_and_streams(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == ["demo"]
    whole = client.completions.create(model="demo", prompt=PROMPTS[0], max_tokens=24, temperature=0)
    assert whole.choices[0].finish_reason in ("length", "stop") and whole.usage.completion_tokens >= 1
    times = whole.model_extra["specgrove"]
    assert times["arrival_time"] <= times["admitted_time"] <= times["first_token_time"] <= times["finish_time"]
    pieces, finish = [], None
    for chunk in client.completions.create(model="demo", prompt=PROMPTS[0], max_tokens=24, temperature=0, stream=True):
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == whole.choices[0].text and finish == whole.choices[0].finish_reason


def test_64_concurrent_greedy_requests_equal_ar(server, pair):
    rng = np.random.default_rng(0)
    prompts = [PROMPTS[i % len(PROMPTS)] + " " * int(rng.integers(0, 3)) for i in range(64)]
    lengths = [int(rng.integers(4, 48)) for _ in prompts]
    before = metric(server, "specgrove_requests_finished_total")

    async def all_requests():
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=300)
        calls = [client.completions.create(model="demo", prompt=p, max_tokens=n, temperature=0)
                 for p, n in zip(prompts, lengths)]
        return await asyncio.wait_for(asyncio.gather(*calls), 300)

    answers = asyncio.run(all_requests())
    assert len({a.id for a in answers}) == 64  # none lost, none duplicated
    prompt_ids = [pair.tokenizer(p)["input_ids"] for p in prompts]
    reference = ar_reference(pair, prompt_ids, lengths)
    for answer, want in zip(answers, reference):
        assert answer.model_extra["specgrove"]["token_ids"] == want
    assert metric(server, "specgrove_requests_finished_total") - before == 64


def test_sampling_with_a_seed_is_reproducible(server):
    body = {"prompt": PROMPTS[1], "max_tokens": 20, "temperature": 0.8, "top_p": 0.95, "seed": 5}
    got = [httpx.post(f"{server}/v1/completions", json=body, timeout=60).json()["specgrove"]["token_ids"] for _ in range(2)]
    other = httpx.post(f"{server}/v1/completions", json={**body, "seed": 6}, timeout=60).json()["specgrove"]["token_ids"]
    assert got[0] == got[1] and len(got[0]) == 20
    assert other != got[0]


def test_disconnect_mid_stream_frees_the_request(server):
    cancelled = metric(server, "specgrove_requests_cancelled_total")
    body = {"prompt": PROMPTS[2], "max_tokens": 480, "temperature": 0, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        got = [line for line, _ in zip(lines, range(6)) if line.startswith("data: ")]
        assert got
    deadline = time.monotonic() + 30
    while metric(server, "specgrove_requests_cancelled_total") == cancelled or metric(server, "specgrove_requests_running") > 0:
        assert time.monotonic() < deadline, "the cancelled request was never freed"
        time.sleep(0.1)
    ok = httpx.post(f"{server}/v1/completions", json={"prompt": "x = ", "max_tokens": 4, "temperature": 0}, timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("body, param", [
    ({"prompt": "", "max_tokens": 4}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 100000}, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "model": "gpt-4"}, "model"),
    ({"max_tokens": 3}, "prompt"),
    ({"prompt": [1, 2, 999999]}, "prompt"),
])
def test_bad_requests_name_the_field(server, body, param):
    resp = httpx.post(f"{server}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_chat_without_a_template_is_a_clear_400(server):
    resp = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
    assert "chat template" in resp.json()["error"]["message"]


def test_metrics_speak_prometheus(server):
    text = httpx.get(f"{server}/metrics", timeout=10).text
    for name in ("specgrove_requests_running", "specgrove_requests_waiting", "specgrove_generation_tokens_total",
                 "specgrove_time_to_first_token_seconds_bucket", "specgrove_time_per_output_token_seconds_bucket",
                 "specgrove_tau", "specgrove_acceptance_rate", "specgrove_steps_total"):
        assert name in text
    assert metric(server, "specgrove_tau") > 1.0  # speculation really happened


@pytest.fixture(scope="module")
def chat_pair(tmp_path_factory):
    """The demo pair under another name, its tokenizer given a chat template."""
    root = tmp_path_factory.mktemp("chat")
    for role in ("target", "draft"):
        shutil.copytree(DEMO_DIR / role, root / role)
        config = root / role / "tokenizer_config.json"
        data = json.loads(config.read_text())
        data["chat_template"] = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
        config.write_text(json.dumps(data))
    return root


def test_chat_queue_full_and_sigterm(chat_pair):
    """One small server: chat through the template, 429 when the queue is full, and SIGTERM
    letting a running request finish before a clean exit."""
    proc, url = start("--target", str(chat_pair / "target"), "--draft", str(chat_pair / "draft"),
                      "--method", "chain", "--max-batch", "1", "--max-queue", "1", "--shutdown-timeout", "60")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        assert client.models.list().data[0].id == "target"
        chat = client.chat.completions.create(model="target", messages=[{"role": "user", "content": "def f():"}],
                                              max_tokens=8, temperature=0)
        assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1

        async def flood():
            async with httpx.AsyncClient(timeout=120) as http:
                body = {"prompt": "import os", "max_tokens": 300, "temperature": 0, "ignore_eos": True}
                return await asyncio.gather(*[http.post(f"{url}/v1/completions", json=body) for _ in range(6)])

        answers = asyncio.run(flood())
        codes = sorted(a.status_code for a in answers)
        assert codes.count(200) >= 1 and 429 in codes, codes
        full = next(a for a in answers if a.status_code == 429)
        assert full.headers["Retry-After"] == "1" and full.json()["error"]["type"] == "rate_limit_error"

        body = {"prompt": "class A:", "max_tokens": 400, "temperature": 0, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as resp:
            lines = resp.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert first
            proc.send_signal(15)  # SIGTERM while the request runs
            rest = list(lines)
        assert rest[-1] == "data: [DONE]" or rest[-2:] == ["data: [DONE]", ""]
        final = json.loads([line for line in rest if line.startswith("data: {")][-1][6:])
        assert final["usage"]["completion_tokens"] == 400
        assert proc.wait(60) == 0
    finally:
        stop(proc)
