"""``specgrove serve --replicas N``: data-parallel replicas in child processes behind a router.

A real two-replica server (each replica one torch thread): greedy outputs equal ``ar``'s and
both replicas get work; a replica SIGKILLed mid-stream has its requests finished by the other,
token for token, and the server stays up and exits cleanly with no process left behind. Without
processes: every router policy over the front-end's load bookkeeping, and the front-end's fault
handling against fake replicas that speak the same pipe protocol.
"""

import pytest

pytest.importorskip("torch", reason="the server needs torch (the 'executor' extra)")
pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
openai = pytest.importorskip("openai", reason="the tests use the openai client (the 'dev' extra)")

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time

import httpx
import numpy as np
import torch
from server_proc import metric, start, stop

from specgrove import registry
from specgrove.executor.engine import EngineConfig, build_engine
from specgrove.executor.parallel.placement import Placement
from specgrove.executor.sampling import SamplingParams
from specgrove.policies.router import ReplicaLoad
from specgrove.serve.metrics import ServeMetrics
from specgrove.serve.replicas import LoadBook, NoReplicaError, PairSource, ReplicaPool, ReplicaStartError, _Replica
from specgrove.serve.runner import Finish, Submission
from specgrove.serve.server import ServeConfig
from specgrove.trace import RequestShare, StepRecord
from specgrove.types import Request

PROMPTS = ["def binary_search(items, target):", "import os\nimport sys\n", "class Point:\n    def __init__(self",
           "for i in range(10):", "# Copyright", "return self._", "with open(path) as f:", "try:\n    import"]
ROUTERS = registry.names("router")


def greedy_reference(pair, prompts, lengths, ignore_eos=False):
    """Plain greedy decoding (``ar``), on one torch thread (the server's replicas are idle)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = build_engine(pair.target, pair.draft, EngineConfig(method="ar", budget=0, max_batch=16,
                                                                    eos_token_id=pair.tokenizer.eos_token_id))
        ids = [engine.add_request(pair.tokenizer(p)["input_ids"], n, ignore_eos=ignore_eos)
               for p, n in zip(prompts, lengths)]
        out = engine.run()
    finally:
        torch.set_num_threads(threads)
    return [out[i] for i in ids]


@pytest.fixture(scope="module")
def replicated():
    proc, url = start("--replicas", "2", "--router", "round-robin", "--method", "dynamic", "--max-batch", "8")
    try:
        yield proc, url
    finally:
        stop(proc)


def test_two_replicas_equal_greedy_and_share_the_work(replicated, pair):
    _proc, url = replicated
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and [r["alive"] for r in health["replicas"]] == [True, True]
    lengths = [8 + 2 * i for i in range(len(PROMPTS))]

    async def all_requests():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        calls = [client.completions.create(model="demo", prompt=p, max_tokens=n, temperature=0)
                 for p, n in zip(PROMPTS, lengths)]
        return await asyncio.wait_for(asyncio.gather(*calls), 120)

    answers = asyncio.run(all_requests())
    for answer, want in zip(answers, greedy_reference(pair, PROMPTS, lengths)):
        assert answer.model_extra["specgrove"]["token_ids"] == want
    per_replica = [metric(url, f'specgrove_replica_requests_total{{replica="{i}"}}') for i in range(2)]
    assert per_replica == [len(PROMPTS) / 2] * 2  # round-robin: each replica got half
    assert metric(url, "specgrove_replicas_alive") == 2 and metric(url, "specgrove_tau") > 1.0


def test_a_killed_replica_s_streams_finish_on_the_other(replicated, pair):
    """SIGKILL replica 0 once every stream has its first tokens: the streams go on, each equal to
    plain greedy decoding; the server stays up, counts the failure and the retries, names the
    replica in its log, and at SIGTERM exits 0 leaving no replica process behind."""
    proc, url = replicated
    pids = [r["pid"] for r in httpx.get(f"{url}/health", timeout=10).json()["replicas"]]
    prompts, n = PROMPTS[:6], 120

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        seen: set[int] = set()

        async def one(i, prompt):
            stream = await client.completions.create(model="demo", prompt=prompt, max_tokens=n, temperature=0,
                                                     stream=True, extra_body={"ignore_eos": True})
            pieces, final = [], None
            async for chunk in stream:
                seen.add(i)
                pieces.append(chunk.choices[0].text)
                final = (chunk.model_extra or {}).get("specgrove") or final
            return "".join(pieces), final

        async def kill_replica_0():
            while len(seen) < len(prompts):
                await asyncio.sleep(0.005)
            os.kill(pids[0], signal.SIGKILL)

        *answers, _ = await asyncio.wait_for(asyncio.gather(*[one(i, p) for i, p in enumerate(prompts)],
                                                            kill_replica_0()), 120)
        return answers

    answers = asyncio.run(run())
    want = greedy_reference(pair, prompts, [n] * len(prompts), ignore_eos=True)
    for (text, final), ids in zip(answers, want):
        assert final["token_ids"] == ids and text == pair.tokenizer.decode(ids)  # one whole stream
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and [r["alive"] for r in health["replicas"]] == [False, True]
    assert metric(url, "specgrove_request_retries_total") >= 1
    assert metric(url, "specgrove_replica_failures_total") == 1 and metric(url, "specgrove_replicas_alive") == 1
    after = httpx.post(f"{url}/v1/completions", json={"prompt": "x = ", "max_tokens": 4, "temperature": 0}, timeout=60)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 4
    # SIGTERM drains: the running stream finishes, then the replicas stop and the server exits 0.
    body = {"prompt": "class A:", "max_tokens": 160, "temperature": 0, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        proc.send_signal(signal.SIGTERM)
        rest = list(lines)
    final = json.loads([line for line in rest if line.startswith("data: {")][-1][6:])
    assert final["usage"]["completion_tokens"] == 160 and "data: [DONE]" in rest
    assert proc.wait(60) == 0
    log = proc.stdout.read()
    assert "replica 0 died (killed by SIGKILL)" in log, log[-2000:]
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.monotonic() < deadline, "a replica process outlived the server"
        time.sleep(0.05)


def test_a_replica_that_cannot_load_is_one_clear_error():
    pool = ReplicaPool(PairSource("/nonexistent/target", "/nonexistent/draft", threads=1), ServeConfig(),
                       Placement(num_replicas=1), "round-robin", ServeMetrics("x"))
    with pytest.raises(ReplicaStartError) as err:
        pool.launch(120)
    assert str(err.value) == "replica 0 failed to start: target model path '/nonexistent/target' is not a directory"
    assert not pool._replicas[0].process.is_alive()


# ---- routing over the front-end's bookkeeping, no processes --------------------------------------

@pytest.mark.parametrize("name", ROUTERS)
def test_every_router_routes_to_live_replicas_only(name):
    router = registry.create("router", name, rng=np.random.default_rng(0))
    book = LoadBook(3)
    book.assign(1, 100, 50)
    assert book.fail(1) == [100]  # a dead replica's requests come back, to be re-routed
    chosen = []
    for key in range(12):
        replica = book.route(router, Request(key, 10, 8))
        book.assign(replica, key, 8)
        chosen.append(replica)
    assert set(chosen) == {0, 2} and chosen.count(0) == chosen.count(2)  # equal loads alternate
    book.fail(0)
    book.fail(2)
    with pytest.raises(NoReplicaError):
        book.route(router, Request(99, 10, 8))


def test_load_bookkeeping():
    book = LoadBook(2)
    book.assign(0, 1, 10)
    book.assign(0, 2, 4)
    book.assign(1, 3, 6)
    book.consume(0, 1, 3)
    book.consume(0, 2, 9)  # never below zero
    assert book.loads() == [ReplicaLoad(0, 2, 7, 1.0, 1.0), ReplicaLoad(1, 1, 6, 1.0, 1.0)]
    share = RequestShare(1, 10, 8, 3, 2, 3)
    book.observe(0, StepRecord(0, 0.0, 0.05, 1, 9, 10, 3, (1, 2, 2), 1.0, 1.0, 1.0, (share,)))
    loads = book.loads()
    assert loads[0].expected_tokens_per_step == 3.0 and loads[0].step_s == pytest.approx(0.05)
    assert loads[1].expected_tokens_per_step == 3.0 and loads[1].step_s == pytest.approx(0.05)  # unknown: the mean
    book.observe(1, StepRecord(0, 0.0, 0.05, 1, 9, 10, 3, (1, 2, 2), 1.0, 1.0, 1.0, (RequestShare(3, 10, 8, 3, 0, 1),)))
    book.release(0, 1)
    book.release(0, 2)
    book.assign(0, 4, 6)
    # Same backlog: the replica that accepts more per step drains it sooner.
    spec = registry.create("router", "speculation-aware")
    assert spec.route(Request(5, 10, 8), book.loads()) == 0
    book.assign(0, 6, 100)
    assert registry.create("router", "least-outstanding").route(Request(7, 10, 8), book.loads()) == 1


# ---- the front-end's fault handling against fake replicas ---------------------------------------

def next_token(context: list[int]) -> int:
    """The fake model: the next token is a function of the whole context, as greedy is."""
    return (sum(context) * 31 + len(context)) % 997


def greedy(prompt: list[int], n: int) -> list[int]:
    context = list(prompt)
    for _ in range(n):
        context.append(next_token(context))
    return context[len(prompt):]


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid, self.exitcode = pid, None
        self.sentinel, self._w = os.pipe()

    def is_alive(self) -> bool:
        return self.exitcode is None

    def exit(self, code: int) -> None:
        if self.exitcode is None:
            self.exitcode = code
            os.close(self._w)

    def join(self, timeout=None) -> None:
        pass

    def terminate(self) -> None:
        self.exit(-15)

    kill = terminate


def fake_replica(process: FakeProcess, commands, events, fail_after: int | None) -> None:
    """Speaks the replica protocol: two tokens per step per request; with ``fail_after``, its
    engine raises after that many steps."""
    open_requests: dict[int, tuple[list[int], int]] = {}
    steps = 0
    try:
        while process.is_alive():
            while commands.poll(0 if open_requests else None):
                msg = commands.recv()
                if msg[0] == "add":
                    _, key, sub = msg
                    open_requests[key] = (list(sub.prompt), sub.max_tokens)
                elif msg[0] == "stop":
                    return
            if fail_after is not None and steps == fail_after:
                events.send(("error", "RuntimeError: boom"))
                return
            tokens, finishes = [], []
            for key, (context, left) in list(open_requests.items()):
                new = greedy(context, min(2, left))
                context += new
                left -= len(new)
                tokens.append((key, new))
                open_requests[key] = (context, left)
                if left == 0:
                    del open_requests[key]
                    now = time.time()
                    finishes.append((key, Finish("length", now, now, now, now, 1, len(new))))
            steps += 1
            events.send(("events", tokens, [(k, time.time(), time.time()) for k, _ in tokens], finishes, [],
                         (len(open_requests), 0)))
            time.sleep(0.01)
    except (EOFError, OSError):
        pass
    finally:
        process.exit(1 if fail_after is not None else 0)
        events.close()


def test_a_failing_replica_s_requests_continue_elsewhere():
    metrics = ServeMetrics("fake", replicas=2)
    pool = ReplicaPool(PairSource(), ServeConfig(), Placement(num_replicas=2), "round-robin", metrics)
    threads = []
    for i, fail_after in enumerate((3, None)):  # replica 0's engine raises at its 4th step
        cmd_r, cmd_w = multiprocessing.Pipe(duplex=False)
        ev_r, ev_w = multiprocessing.Pipe(duplex=False)
        process = FakeProcess(1000 + i)
        pool._replicas.append(_Replica(i, process, cmd_w, ev_r))
        threads.append(threading.Thread(target=fake_replica, args=(process, cmd_r, ev_w, fail_after), daemon=True))
    for t in threads:
        t.start()
    pool.max_positions = 10_000
    pool.start()
    prompts = [[5, 6, 7], [1, 2], [9], [4, 4, 4, 4]]

    async def run():
        streams = [pool.submit(Submission(p, 21, SamplingParams(0.0))) for p in prompts]
        out = []
        for stream in streams:
            ids = []
            while not isinstance(item := await asyncio.wait_for(stream.events.get(), 20), Finish):
                ids += item
            out.append((ids, item))
        return out

    try:
        results = asyncio.run(run())
    finally:
        assert pool.stop(20)
    for prompt, (ids, finish) in zip(prompts, results):
        assert ids == greedy(prompt, 21) and finish.reason == "length" and finish.num_tokens == 21
    assert metrics.replica_failures._value.get() == 1 and metrics.retries._value.get() == 2
    assert [r["alive"] for r in pool.replica_status()] == [False, False]  # all stopped at the end
    assert pool.error is None and pool.num_waiting == 0 and pool.num_running == 0


def test_serve_exits_with_one_line_when_a_replica_cannot_load(tmp_path, capsys):
    """The front-end's checks pass (paths, tokenizer), the replicas' loading fails: one line,
    exit 2, before anything listens."""
    import shutil

    from specgrove.cli import main
    from specgrove.executor.loading import DEMO_DIR

    for role in ("target", "draft"):
        shutil.copytree(DEMO_DIR / role, tmp_path / role)
    for weights in (tmp_path / "target").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    threads = torch.get_num_threads()
    try:
        code = main(["serve", "--replicas", "2", "--threads", "1", "--port", "0", "--method", "dynamic",
                     "--target", str(tmp_path / "target"), "--draft", str(tmp_path / "draft")])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("specgrove: error: replica ") and " failed to start: " in err and "Safetensor" in err


def test_a_separate_draft_and_tp_behind_the_server(pair):
    """One replica over three ranks (tp=2 target, the draft on its own rank): the server's
    greedy answers equal ``ar``'s, and SIGTERM stops every rank."""
    proc, url = start("--tp", "2", "--draft-placement", "separate", "--method", "dynamic", "--max-batch", "4")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        lengths = [6, 9, 7, 8]
        answers = [client.completions.create(model="demo", prompt=p, max_tokens=n, temperature=0)
                   for p, n in zip(PROMPTS, lengths)]
        want = greedy_reference(pair, PROMPTS[:4], lengths)
        assert [a.model_extra["specgrove"]["token_ids"] for a in answers] == want
        children = [int(p) for p in os.popen(f"pgrep -P {proc.pid}").read().split()]
    finally:
        assert stop(proc) == 0
    deadline = time.monotonic() + 15
    while [c for c in children if _alive(c)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert children and not [c for c in children if _alive(c)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read().lower()
    except OSError:
        return False
