"""The OpenAI-compatible HTTP API (FastAPI) over an ``EngineRunner`` (or a ``ReplicaPool``,
which offers the same calls).

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (where the tokenizer has a chat
template), ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text). Streaming
answers are Server-Sent Events in OpenAI's chunk format, ending with ``data: [DONE]``. Every
response carries the request's server-side times under ``specgrove`` (queued, first token,
finished), so a client can tell network from queueing. Bad requests get 400 with an
OpenAI-style error body whose ``param`` names the field; a full queue gets 429 + Retry-After.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from specgrove.executor.sampling import SamplingParams
from specgrove.serve.runner import EngineRunner, Finish, Stream, Submission


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.headers = status, message, param, kind, headers


def error_response(err: ApiError) -> JSONResponse:
    body = {"error": {"message": err.message, "type": err.kind, "param": err.param, "code": None}}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


class _Body(BaseModel):
    # OpenAI clients send fields this server ignores (user, logit_bias, ...): allow them.
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stream: bool = False
    n: int = 1
    deadline_s: float | None = None  # seconds after arrival; the edf scheduler admits by it
    ignore_eos: bool = False  # generate max_tokens whatever comes (as vLLM's; for load tests)


class CompletionBody(_Body):
    prompt: str | list[int]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str


class ChatBody(_Body):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    tokenizer: object
    max_context: int  # prompt + max_tokens must fit
    default_max_tokens: int = 16


def _submission(body: _Body, prompt: list[int], served: ServedModel, max_tokens: int | None) -> Submission:
    if body.model is not None and body.model != served.model_id:
        raise ApiError(400, f"unknown model {body.model!r}; this server serves {served.model_id!r}", "model")
    if body.n != 1:
        raise ApiError(400, "n must be 1", "n")
    if not prompt:
        raise ApiError(400, "the prompt is empty", "prompt")
    max_tokens = served.default_max_tokens if max_tokens is None else max_tokens
    if max_tokens < 1:
        raise ApiError(400, f"max_tokens must be >= 1, got {max_tokens}", "max_tokens")
    if len(prompt) + max_tokens > served.max_context:
        raise ApiError(400, f"the prompt ({len(prompt)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                            f"model's context ({served.max_context} tokens)", "max_tokens")
    if not math.isfinite(body.temperature) or body.temperature < 0:
        raise ApiError(400, f"temperature must be a finite number >= 0, got {body.temperature}", "temperature")
    if not (0.0 < body.top_p <= 1.0):
        raise ApiError(400, f"top_p must be in (0, 1], got {body.top_p}", "top_p")
    if body.deadline_s is not None and not (math.isfinite(body.deadline_s) and body.deadline_s >= 0):
        raise ApiError(400, f"deadline_s must be a finite number >= 0, got {body.deadline_s}", "deadline_s")
    if any(not 0 <= t < len(served.tokenizer) for t in prompt):
        raise ApiError(400, "the prompt holds token ids outside the vocabulary", "prompt")
    return Submission(prompt, max_tokens, SamplingParams(body.temperature, body.top_p), body.seed, body.deadline_s,
                      body.ignore_eos)


def _times(finish: Finish) -> dict:
    out = asdict(finish)
    out.pop("reason")
    out.pop("error")
    a = finish.arrival_time
    out["queued_s"] = None if finish.admitted_time is None else finish.admitted_time - a
    out["ttft_s"] = None if finish.first_token_time is None else finish.first_token_time - a
    out["e2e_s"] = finish.finish_time - a
    return out


class _Detokenizer:
    """Incremental text at constant cost per chunk: decode a short window of recent tokens and
    hand out what it adds past the previous window (a byte-level BPE token can be half a
    character, so a tail that is not valid UTF-8 yet waits for the next token)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.ids = tokenizer, []
        self.prefix, self.read = 0, 0  # ids[prefix:read] is text already handed out

    def add(self, ids: list[int]) -> str:
        self.ids += ids
        return self._advance(final=False)

    def flush(self) -> str:
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read])
        text = decode(self.ids[self.prefix :])
        if len(text) <= len(before) or (text.endswith("\ufffd") and not final):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before):]


def create_app(runner: EngineRunner, served: ServedModel) -> FastAPI:  # or a ReplicaPool
    """The app over a runner whose engine loop runs elsewhere (``runner.run`` on the main
    thread, or ``runner.start``); at shutdown, after the last connection, it asks the loop to
    finish."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        runner.request_stop()

    app = FastAPI(title="specgrove", lifespan=lifespan)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        # A union's branch shows up in the location ("prompt.str"): keep the field path only.
        loc = [str(p) for p in first.get("loc", ()) if p != "body" and str(p) not in ("str", "int", "float", "bool")
               and "[" not in str(p)]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "the body is not valid JSON", None
        elif first.get("type") == "missing":
            message = f"{param} is required"
        return error_response(ApiError(400, f"{param}: {message}" if param and first.get("type") != "missing" else message, param))

    @app.get("/health")
    async def health() -> Response:
        if runner.error:
            return error_response(ApiError(503, f"the engine failed: {runner.error}", kind="server_error"))
        body = {"status": "ok", "running": runner.num_running, "waiting": runner.num_waiting}
        replicas = getattr(runner, "replica_status", None)  # a ReplicaPool: its replicas, alive or not
        if replicas is not None:
            body["replicas"] = replicas()
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(runner.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": served.model_id, "object": "model", "created": created,
                                            "owned_by": "specgrove", "max_model_len": served.max_context}]}

    def admit(sub: Submission) -> Stream:
        if runner.error:
            raise ApiError(503, f"the engine failed: {runner.error}", kind="server_error")
        if runner.is_full():
            runner.metrics.rejected.inc()
            raise ApiError(429, f"the queue is full ({runner.max_queue} requests waiting); retry later",
                           kind="rate_limit_error", headers={"Retry-After": "1"})
        return runner.submit(sub)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, request: Request) -> Response:
        if not body.prompt:  # before tokenizing: a tokenizer may turn "" into a lone BOS
            raise ApiError(400, "the prompt is empty", "prompt")
        prompt = body.prompt if isinstance(body.prompt, list) else served.tokenizer(body.prompt)["input_ids"]
        sub = _submission(body, prompt, served, body.max_tokens)
        stream = admit(sub)
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        if body.stream:
            return _sse(request, stream, rid, "text_completion", lambda text, reason: {"index": 0, "text": text,
                        "logprobs": None, "finish_reason": reason}, len(prompt))
        ids, finish = await _collect(request, stream)
        choice = {"index": 0, "text": served.tokenizer.decode(ids), "logprobs": None, "finish_reason": _reason(finish)}
        return JSONResponse({"id": rid, "object": "text_completion", "created": int(time.time()), "model": served.model_id,
                             "choices": [choice], "usage": _usage(len(prompt), ids),
                             "specgrove": {**_times(finish), "token_ids": ids}})

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody, request: Request) -> Response:
        tok = served.tokenizer
        if getattr(tok, "chat_template", None) is None:
            raise ApiError(400, f"model {served.model_id!r} has no chat template; use /v1/completions", "messages")
        if not body.messages:
            raise ApiError(400, "messages is empty", "messages")
        prompt = list(tok.apply_chat_template([m.model_dump() for m in body.messages], add_generation_prompt=True,
                                              tokenize=True, return_dict=False))
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        stream = admit(_submission(body, prompt, served, max_tokens))
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.stream:
            return _sse(request, stream, rid, "chat.completion.chunk",
                        lambda text, reason: {"index": 0, "delta": {"role": "assistant", "content": text} if text or reason is None else {},
                                              "logprobs": None, "finish_reason": reason}, len(prompt))
        ids, finish = await _collect(request, stream)
        choice = {"index": 0, "message": {"role": "assistant", "content": tok.decode(ids)}, "logprobs": None,
                  "finish_reason": _reason(finish)}
        return JSONResponse({"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served.model_id,
                             "choices": [choice], "usage": _usage(len(prompt), ids),
                             "specgrove": {**_times(finish), "token_ids": ids}})

    async def _collect(request: Request, stream: Stream) -> tuple[list[int], Finish]:
        ids: list[int] = []
        while True:
            item = await stream.events.get()
            if isinstance(item, Finish):
                if item.reason == "error":
                    raise ApiError(500, f"the engine failed: {item.error}", kind="server_error")
                return ids, item
            ids += item

    def _sse(request: Request, stream: Stream, rid: str, obj: str, choice, num_prompt: int) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            detok, ids, done = _Detokenizer(served.tokenizer), [], False
            try:
                while True:
                    item = await stream.events.get()
                    if await request.is_disconnected():
                        return
                    chunk = {"id": rid, "object": obj, "created": int(time.time()), "model": served.model_id}
                    if isinstance(item, Finish):
                        done = True
                        if item.reason == "error":
                            yield f"data: {json.dumps({'error': {'message': item.error, 'type': 'server_error'}})}\n\n"
                            return
                        tail = detok.flush()
                        if tail:
                            yield f"data: {json.dumps({**chunk, 'choices': [choice(tail, None)]})}\n\n"
                        chunk.update(choices=[choice("", _reason(item))], usage=_usage(num_prompt, ids),
                                     specgrove={**_times(item), "token_ids": ids})
                        yield f"data: {json.dumps(chunk)}\n\n"
                        yield "data: [DONE]\n\n"
                        return
                    ids += item
                    text = detok.add(item)
                    if text:
                        yield f"data: {json.dumps({**chunk, 'choices': [choice(text, None)]})}\n\n"
            finally:
                if not done:  # the client went away (or the server is stopping): free the rows
                    runner.cancel(stream)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _reason(finish: Finish) -> str:
    return "stop" if finish.reason == "stop" else "length"


def _usage(num_prompt: int, ids: list[int]) -> dict:
    return {"prompt_tokens": num_prompt, "completion_tokens": len(ids), "total_tokens": num_prompt + len(ids)}
