"""Real HTTP servers on 127.0.0.1 that speak TGI's and OpenAI's wire formats, scriptable per test.

The "model" is deterministic: :func:`fake_correction` derives the reply from the prompt, so tests compute
the expected output from the prompt they expect to be sent. Tokens are whitespace-delimited words (see
:func:`fake_tokens`); TGI's BOS counts as one more input token, as on a real TGI.

Scripting (see :class:`Script`): fail the next N requests with a status, delay answers, send an error
event after N streamed tokens, set the input limit reported by ``/info``, make the model write a given text
(an empty or degenerate correction), answer with a 200 whose body is not JSON (a proxy's error page).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from langchain_aligner.templates import get_template

__all__ = [
    "FakeServer",
    "Script",
    "fake_aligner_reply",
    "fake_correction",
    "fake_tokens",
    "start_fake_server",
]

TGI_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded", 500: "incomplete_generation"}
MODEL_ID = "fake/aligner-7b"


def fake_tokens(text: str) -> list[str]:
    """The fake tokenizer: words with their trailing white space."""
    return re.findall(r"\s*\S+", text)


def fake_correction(prompt: str) -> str:
    """The fake Aligner's full reply to ``prompt`` (before ``max_new_tokens``/stop sequences apply)."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
    return f"Corrected {digest}: a careful reply to {len(fake_tokens(prompt))} words. END of reply."


def fake_aligner_reply(question: str, answer: str, template: str = "aligner-v1") -> str:
    """What ``AlignerRunnable`` returns from a fake server for this pair, prompted with ``template``."""
    return fake_correction(get_template(template).format(question, answer))


def fake_generate(
    prompt: str, max_new_tokens: int, stop: list[str], reply: str | None = None
) -> tuple[list[str], str]:
    """Tokens generated for ``prompt`` and TGI's finish reason; a stop sequence is kept, as TGI does.

    The first token has a leading space, as a real Aligner's after ``ASSISTANT:``; ``AlignerRunnable`` drops
    it, so what users see is exactly :func:`fake_correction`. ``reply`` replaces that text verbatim (white
    space alone is one token; ``""`` is no token at all).
    """
    tokens: list[str] = []
    text = ""
    pieces = fake_tokens(" " + fake_correction(prompt)) if reply is None else re.findall(r"\s*\S+|\s+", reply)
    for token in pieces:
        if len(tokens) == max_new_tokens:
            return tokens, "length"
        tokens.append(token)
        text += token
        if any(s in text for s in stop):
            return tokens, "stop_sequence"
    return tokens, "eos_token"


@dataclass
class Script:
    """What the server does next; reset before every test."""

    #: Statuses to answer the next requests with, one per request (e.g. ``[429, 429]``).
    fail: list[int] = field(default_factory=list)
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Send an error event after this many streamed tokens.
    stream_error_after: int | None = None
    #: TGI: ``max_input_tokens`` of ``/info``, enforced with a 422. OpenAI: the context length
    #: (``max_model_len``): prompt plus ``max_tokens`` beyond it is a 400, as on vLLM.
    max_input_tokens: int = 4096
    #: TGI: ``max_total_tokens`` of ``/info`` (``None``: ``max_input_tokens + 1024``); input plus
    #: ``max_new_tokens`` beyond it is a 422, as on TGI.
    max_total_tokens: int | None = None
    #: What the model writes instead of :func:`fake_correction`'s reply, e.g. ``""`` or ``"1. 1. 1. 1."``.
    reply: str | None = None
    #: Answer generation routes (streamed or not) with a 200 and this ``text/html`` body (a proxy's page).
    raw_body: str | None = None
    #: ``GET /info`` requests received (TGI).
    info_reads: int = 0
    #: Request bodies received on generation routes, in order.
    requests: list[dict[str, Any]] = field(default_factory=list)


class FakeServer:
    """A uvicorn server in a background thread; ``url`` is its base URL."""

    def __init__(self, app: FastAPI, script: Script) -> None:
        self.script = script
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
        # it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> FakeServer:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def reset(self) -> Script:
        self.script.fail.clear()
        self.script.requests.clear()
        self.script.delay, self.script.stream_error_after, self.script.max_input_tokens = 0.0, None, 4096
        self.script.reply, self.script.raw_body, self.script.max_total_tokens = None, None, None
        self.script.info_reads = 0
        return self.script


def start_fake_server(kind: str) -> FakeServer:
    """Start a fake ``"tgi"`` or ``"openai"`` server."""
    script = Script()
    app = _tgi_app(script) if kind == "tgi" else _openai_app(script)
    return FakeServer(app, script).start()


async def _scripted_failure(script: Script, body: dict[str, Any]) -> int | None:
    script.requests.append(body)
    # Taken on arrival: a delayed request that outlives its test must not take the next test's failure.
    status = script.fail.pop(0) if script.fail else None
    if script.delay:
        await asyncio.sleep(script.delay)
    return status


# -- TGI ---------------------------------------------------------------------------------------------------


def _tgi_error(status: int, message: str | None = None) -> JSONResponse:
    error_type = TGI_ERROR_TYPES.get(status, "unknown")
    return JSONResponse(
        {"error": message or f"scripted {error_type} error", "error_type": error_type}, status
    )


def _tgi_validate(body: dict[str, Any], script: Script) -> str | None:
    params = body.get("parameters") or {}
    top_p, temperature = params.get("top_p"), params.get("temperature")
    if top_p is not None and not 0 < top_p < 1:
        return "Input validation error: `top_p` must be > 0.0 and < 1.0"
    if temperature is not None and temperature <= 0:
        return "Input validation error: `temperature` must be strictly positive"
    input_tokens = 1 + len(fake_tokens(body["inputs"]))
    if input_tokens > script.max_input_tokens:
        return (
            f"Input validation error: `inputs` must have less than {script.max_input_tokens} tokens. "
            f"Given: {input_tokens}"
        )
    max_new_tokens = params.get("max_new_tokens") or 100
    if input_tokens + max_new_tokens > _max_total_tokens(script):
        return (
            f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
            f"{_max_total_tokens(script)}. Given: {input_tokens} `inputs` tokens and {max_new_tokens} "
            "`max_new_tokens`"
        )
    return None


def _max_total_tokens(script: Script) -> int:
    return script.max_total_tokens or script.max_input_tokens + 1024


def _token(i: int, text: str) -> dict[str, Any]:
    return {"id": 1000 + i, "text": text, "logprob": -0.5, "special": False}


def _tgi_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/info")
    async def info() -> dict[str, Any]:
        script.info_reads += 1
        return {
            "model_id": MODEL_ID,
            "max_concurrent_requests": 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": script.max_input_tokens,
            "max_total_tokens": _max_total_tokens(script),
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.3.0",
        }

    @app.post("/tokenize")
    async def tokenize(request: Request) -> list[dict[str, Any]]:
        text = (await request.json())["inputs"]
        tokens, start = [{"id": 1, "text": "<s>", "start": 0, "stop": 0}], 0
        for i, piece in enumerate(fake_tokens(text)):
            tokens.append({"id": 1000 + i, "text": piece, "start": start, "stop": start + len(piece)})
            start += len(piece)
        return tokens

    async def accept(request: Request) -> tuple[dict[str, Any], list[str], str] | Response:
        """The request body with the fake generation, or the scripted (or validation) error response."""
        body = await request.json()
        status = await _scripted_failure(script, body)
        if status is not None:
            return _tgi_error(status)
        if script.raw_body is not None:
            return HTMLResponse(script.raw_body)
        if (invalid := _tgi_validate(body, script)) is not None:
            return _tgi_error(422, invalid)
        params = body.get("parameters") or {}
        tokens, finish = fake_generate(
            body["inputs"], params.get("max_new_tokens") or 100, params.get("stop") or [], script.reply
        )
        return body, tokens, finish

    @app.post("/generate")
    async def generate(request: Request) -> Response:
        accepted = await accept(request)
        if isinstance(accepted, Response):
            return accepted
        body, tokens, finish = accepted
        params = body.get("parameters") or {}
        prefill = [{"id": 1, "text": "<s>", "logprob": None}] + [
            {"id": 1000 + i, "text": t, "logprob": -0.5} for i, t in enumerate(fake_tokens(body["inputs"]))
        ]
        details = {
            "finish_reason": finish,
            "generated_tokens": len(tokens),
            "seed": None,
            "prefill": prefill if params.get("decoder_input_details") else [],
            "tokens": [_token(i, t) for i, t in enumerate(tokens)],
        }
        return JSONResponse(
            {"generated_text": "".join(tokens), "details": details if params.get("details") else None}
        )

    @app.post("/generate_stream")
    async def generate_stream(request: Request) -> Any:
        accepted = await accept(request)
        if isinstance(accepted, Response):
            return accepted
        body, tokens, finish = accepted
        # A scripted reply ends on the EOS token, as on a real TGI (a special token, not in the text), so
        # that even an empty reply streams one event.
        eos = script.reply is not None and finish == "eos_token"

        async def events() -> AsyncIterator[str]:
            for i, text in enumerate([*tokens, "</s>"] if eos else tokens):
                if script.stream_error_after is not None and i == script.stream_error_after:
                    error = {
                        "error": "Request failed during generation: scripted",
                        "error_type": "generation",
                    }
                    yield f"data:{json.dumps(error)}\n\n"
                    return
                last = i == len(tokens) - (0 if eos else 1)
                event = {
                    "index": i,
                    "token": {**_token(i, text), "special": eos and last},
                    "top_tokens": [],
                    "generated_text": "".join(tokens) if last else None,
                    "details": {
                        "finish_reason": finish,
                        "generated_tokens": len(tokens),
                        "input_length": 1 + len(fake_tokens(body["inputs"])),
                        "seed": None,
                    }
                    if last
                    else None,
                }
                yield f"data:{json.dumps(event)}\n\n"
                await asyncio.sleep(0)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


# -- OpenAI-compatible -------------------------------------------------------------------------------------


def _openai_error(status: int, message: str | None = None) -> JSONResponse:
    body = {"error": {"message": message or f"scripted HTTP {status}", "type": "scripted", "code": status}}
    return JSONResponse(body, status)


def _openai_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}
        return {"object": "list", "data": [{**model, "max_model_len": script.max_input_tokens}]}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = await request.json()
        count = len(fake_tokens(body["prompt"]))
        return {"count": count, "max_model_len": script.max_input_tokens, "tokens": list(range(count))}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        status = await _scripted_failure(script, body)
        if status is not None:
            return _openai_error(status)
        if script.raw_body is not None:
            return HTMLResponse(script.raw_body)
        prompt_tokens = len(fake_tokens(body["prompt"]))
        max_tokens = body.get("max_tokens") or 16
        if prompt_tokens + max_tokens > script.max_input_tokens:
            return _openai_error(
                400,
                f"This model's maximum context length is {script.max_input_tokens} tokens. However, you "
                f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{max_tokens} in the completion).",
            )
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        tokens, finish = fake_generate(body["prompt"], max_tokens, stops, script.reply)
        text = "".join(tokens)
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
        finish = "length" if finish == "length" else "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        base = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        if not body.get("stream"):
            choice = {"index": 0, "text": text[:cut], "finish_reason": finish, "logprobs": None}
            return {**base, "choices": [choice], "usage": usage}

        async def events() -> AsyncIterator[str]:
            sent = 0
            for i, token in enumerate(tokens or [""]):  # an empty reply still sends its finish reason
                if script.stream_error_after is not None and i == script.stream_error_after:
                    error = {"error": {"message": "scripted failure", "type": "scripted", "code": 500}}
                    yield f"data: {json.dumps(error)}\n\n"
                    return
                piece = token[: max(cut - sent, 0)]
                sent += len(token)
                last = i >= len(tokens) - 1
                choice = {
                    "index": 0,
                    "text": piece,
                    "finish_reason": finish if last else None,
                    "logprobs": None,
                }
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
                await asyncio.sleep(0)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
