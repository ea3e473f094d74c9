"""The FastAPI app: TGI's routes and the OpenAI-compatible ones, on top of a :class:`BatchingEngine`.

Errors have TGI's shape everywhere (``{"error": ..., "error_type": ...}``): 422 ``validation``, 429
``overloaded``, 424 ``generation``, 500 ``incomplete_generation``, plus 401, 404, 408 and 413 (and 500
``internal``, without the cause's text, for a bug). An error after a stream has started arrives as one last
event with that body, as on TGI.

As on TGI, the API key guards the generation routes and ``/tokenize`` and is checked before the body is read;
``/health``, ``/info``, ``/metrics`` and ``/v1/models`` stay open (load balancers and Prometheus scrape them).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from typing import Any

import pydantic_core
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from langchain_aligner.backends._stops import StopTrimmer, cut_at_stop
from langchain_aligner.server.disconnect import CancelOnDisconnect
from langchain_aligner.server.engine import (
    BatchingEngine,
    EngineGenerationError,
    EngineOverloaded,
    EngineRequest,
    EngineUnavailable,
    EngineValidationError,
    FinishEvent,
    TokenEvent,
)
from langchain_aligner.wire.openai_compat import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatRequest,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    Usage,
    finish_reason,
)
from langchain_aligner.wire.tgi import (
    ERROR_STATUS,
    HTTP_ERROR_TYPES,
    CompatGenerateRequest,
    Details,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    GenerateStreamRequest,
    Info,
    PrefillToken,
    SimpleToken,
    StreamDetails,
    StreamResponse,
    Token,
)

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "DEFAULT_REQUEST_BODY_TIMEOUT", "create_app"]

DEFAULT_MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Largest request body accepted (413 above it), TGI's default ``--payload-limit``."""

DEFAULT_REQUEST_BODY_TIMEOUT = 30.0
"""Seconds to wait for the next piece of a request body (408 after it, e.g. a Content-Length never sent)."""

logger = logging.getLogger(__name__)

_VERSION = version("langchain-aligner")
Events = AsyncIterator[TokenEvent | FinishEvent]
_Endpoint = Callable[..., Awaitable[Any]]


class _Failure(Exception):
    """An error answered with TGI's error body, and the status TGI gives its ``error_type``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = ERROR_STATUS[error_type], error_type, message

    def body(self) -> dict[str, str]:
        return ErrorResponse(error=self.message, error_type=self.error_type).model_dump()


def _failure(error: Exception) -> _Failure:
    """The TGI error for what the engine raised."""
    if isinstance(error, _Failure):
        return error
    if isinstance(error, EngineValidationError):  # its message has TGI's "Input validation error: " prefix
        return _Failure("validation", str(error))
    if isinstance(error, EngineOverloaded):
        return _Failure("overloaded", str(error))
    if isinstance(error, EngineUnavailable):  # draining before shutdown
        return _Failure("unavailable", str(error))
    if isinstance(error, EngineGenerationError):
        return _Failure("generation", f"Request failed during generation: {error}")
    logger.exception("unexpected error while serving a request", exc_info=error)
    return _Failure("internal", "Internal server error")  # the cause is in the log, not in the answer


def _validation_message(error: RequestValidationError) -> str:
    """TGI-style text for pydantic's errors: our validators' messages as they are, others with a location."""
    parts = []
    for item in error.errors():
        ctx_error = (item.get("ctx") or {}).get("error")
        if item.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON: {ctx_error}")
        elif item.get("type") == "value_error" and ctx_error is not None:
            parts.append(str(ctx_error))
        else:
            location = ".".join(str(part) for part in item.get("loc", ())[1:]) or "body"
            parts.append(f"`{location}`: {item.get('msg')}")
    return "Input validation error: " + "; ".join(parts)


class _BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (declared or streamed) is answered with 413, and one
    whose next piece does not come within ``timeout`` seconds (a Content-Length larger than what the client
    sends) with 408, closing the connection. Once the body is in, reads (waiting for a disconnect) have no
    time limit.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        received = 0
        body_done = False

        async def limited_receive() -> MutableMapping[str, Any]:
            nonlocal received, body_done
            if body_done:
                return await receive()
            if declared is not None and int(declared) > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            try:
                message: MutableMapping[str, Any] = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                stalled = f"request body not received within {self.timeout:g} s"
                raise HTTPException(408, stalled, headers={"Connection": "close"}) from None
            body_done = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


class _StrictJSONRequest(Request):
    """A request whose JSON body is parsed as strictly as TGI's serde parser does: ``NaN``, ``Infinity`` and
    lone surrogates (which no UTF-8 text can hold) are invalid JSON, hence a 422."""

    async def json(self) -> Any:
        body = await self.body()
        try:
            return pydantic_core.from_json(body, allow_inf_nan=False)
        except ValueError as error:  # FastAPI answers a JSONDecodeError with its validation error
            raise json.JSONDecodeError(str(error), body.decode(errors="replace"), 0) from error


class _APIRoute(APIRoute):
    """A route of the API proper: the API key is checked before the body is read (TGI's auth layer; an
    unauthenticated client gets 401 whatever its body), then the JSON body is parsed strictly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authorized_handler(request: Request) -> Response:
            request.app.state.server.authorize(request.headers.get("authorization"))
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return authorized_handler


class _Metrics:
    """Prometheus metrics of one app, named as TGI names them (``tgi_request_*``)."""

    def __init__(self, engine: BatchingEngine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.counts = _RequestCounts()
        r.register(self.counts)
        self.duration = Histogram("tgi_request_duration", "Seconds from request to answer.", registry=r)
        self.queue = Histogram("tgi_request_queue_duration", "Seconds waiting for a batch slot.", registry=r)
        self.inference = Histogram("tgi_request_inference_duration", "Seconds of inference.", registry=r)
        tokens = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)
        self.input_length = Histogram(
            "tgi_request_input_length", "Prompt tokens per request.", buckets=tokens, registry=r
        )
        self.generated = Histogram(
            "tgi_request_generated_tokens", "Generated tokens per request.", buckets=tokens, registry=r
        )
        in_flight = Gauge("tgi_queue_size", "Requests in flight (queued or decoding).", registry=r)
        in_flight.set_function(lambda: engine.in_flight)
        r.register(_EngineCollector(engine))

    def received(self) -> None:
        self.counts.requests += 1

    def finished(self, finish: FinishEvent, started: float) -> None:
        self.counts.success += 1
        self.duration.observe(time.perf_counter() - started)
        self.queue.observe(finish.queue_ms / 1000)
        self.inference.observe(finish.inference_ms / 1000)
        self.input_length.observe(finish.input_tokens)
        self.generated.observe(finish.generated_tokens)

    def failed(self, failure: _Failure) -> None:
        self.counts.failures[failure.error_type] += 1


class _RequestCounts(Collector):
    """TGI's request counters under TGI's names: ``tgi_request_count``, ``tgi_request_success`` and
    ``tgi_request_failure{err}``. prometheus_client exposes every counter as ``<name>_total``, so these are
    exposed untyped, which keeps the names; ``rate()`` and ``increase()`` work on them as on counters."""

    def __init__(self) -> None:
        self.requests = 0
        self.success = 0
        self.failures: collections.Counter[str] = collections.Counter()

    def collect(self) -> Iterator[Metric]:
        yield UnknownMetricFamily("tgi_request_count", "Generation requests received.", self.requests)
        yield UnknownMetricFamily("tgi_request_success", "Generation requests that finished.", self.success)
        failure = UnknownMetricFamily("tgi_request_failure", "Failed requests by error type.", labels=["err"])
        for error_type, count in sorted(self.failures.items()):
            failure.add_metric([error_type], count)
        yield failure


_ENGINE_COUNTERS = (
    "requests",
    "finished",
    "cancelled",
    "failed",
    "rejected",
    "prefills",
    "decode_steps",
    "input_tokens",
    "generated_tokens",
)


class _EngineCollector(Collector):
    """The engine's own counters (:class:`EngineStats`), read at every scrape."""

    def __init__(self, engine: BatchingEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = self.engine.stats
        for name in _ENGINE_COUNTERS:
            value = getattr(stats, name)
            yield CounterMetricFamily(f"aligner_engine_{name}", f"Engine {name} so far.", value)
        steps = CounterMetricFamily(
            "aligner_engine_batch_steps", "Decode steps by batch size (rows).", labels=["size"]
        )
        for size, count in sorted(stats.batch_sizes.items()):
            steps.add_metric([str(size)], count)
        yield steps
        yield GaugeMetricFamily(
            "aligner_engine_max_batch_size", "Largest batch decoded so far.", stats.max_batch_size
        )


def _logprob(event: TokenEvent) -> float | None:
    """The token's logprob; ``None`` (JSON ``null``) for the first prompt token, which has none."""
    return None if math.isnan(event.logprob) else event.logprob


def _token(event: TokenEvent) -> Token:
    return Token(id=event.id, text=event.text, logprob=_logprob(event), special=event.special)


def _usage(finish: FinishEvent) -> Usage:
    return Usage(
        prompt_tokens=finish.input_tokens,
        completion_tokens=finish.generated_tokens,
        total_tokens=finish.input_tokens + finish.generated_tokens,
    )


class _Server:
    """The routes' shared state: the engine, metrics and the model's identity."""

    def __init__(self, engine: BatchingEngine, api_key: str | None) -> None:
        self.engine = engine
        self.api_key = api_key
        self.metrics = _Metrics(engine)
        self.created = int(time.time())
        self.fingerprint = f"{_VERSION}-langchain-aligner"
        self.ready = False

    def authorize(self, authorization: str | None) -> None:
        """Raise 401 unless ``authorization`` is ``Bearer <api_key>`` (when a key is set); the scheme's case
        does not matter (RFC 7235), the key's does."""
        if self.api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        key_matches = secrets.compare_digest(token.strip().encode(), self.api_key.encode())
        if scheme.lower() != "bearer" or not key_matches:
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    # -- running requests ----------------------------------------------------------------------------------

    @contextmanager
    def failures(self) -> Iterator[None]:
        """Turn what the engine raises into :class:`_Failure` and count it in the metrics."""
        try:
            yield
        except Exception as error:
            failure = _failure(error)
            self.metrics.failed(failure)
            try:
                raise failure from error
            finally:  # the traceback holds this frame: without this, frame and failure form a cycle that
                del failure  # keeps the request (its prompt, its tokens) alive until a full GC runs

    async def generate(self, request: EngineRequest) -> FinishEvent:
        """Run ``request`` to the end, counting it in the metrics; engine errors become :class:`_Failure`."""
        started = time.perf_counter()
        self.metrics.received()
        with self.failures():
            finish = await self.engine.generate(request)
        self.metrics.finished(finish, started)
        return finish

    async def stream(self, request: EngineRequest) -> tuple[TokenEvent | FinishEvent, Events, float]:
        """Start streaming ``request``: its first event (errors before it are raised as :class:`_Failure`,
        so they get an HTTP status), the rest of the events and the start time."""
        started = time.perf_counter()
        self.metrics.received()
        events = aiter(self.engine.stream(request))
        with self.failures():
            first = await anext(events)
        return first, events, started

    async def events(
        self, first: TokenEvent | FinishEvent, events: Events, started: float
    ) -> AsyncIterator[tuple[TokenEvent, FinishEvent | None]]:
        """Yield each token as it comes, the last one (the engine marks it) paired with the finish event
        (TGI's last stream event carries both), counting the request in the metrics. Closes the engine's
        stream when the client goes away, which frees its row in the batch."""
        token: TokenEvent | FinishEvent | None = first
        try:
            with self.failures():
                while isinstance(token, TokenEvent):
                    if not token.last:
                        yield token, None
                        token = await anext(events, None)
                        continue
                    try:
                        finish = await anext(events, None)
                    except Exception:
                        yield token, None  # the tokens generated before the failure go out first
                        raise
                    if not isinstance(finish, FinishEvent):
                        break
                    self.metrics.finished(finish, started)
                    yield token, finish
                    return
                raise _Failure("incomplete_generation", "Incomplete generation: the stream ended early")
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    # -- TGI -----------------------------------------------------------------------------------------------

    def engine_request(self, request: GenerateRequest) -> EngineRequest:
        params = request.parameters
        return EngineRequest(
            prompt=request.inputs,
            params=params.to_generation_params(self.engine.max_total_tokens),
            decoder_input_details=params.decoder_input_details,
            top_n_tokens=params.top_n_tokens or 0,
            default_max_new_tokens=params.max_new_tokens is None,  # the engine fits it after tokenizing
        )

    async def generate_response(self, request: GenerateRequest) -> GenerateResponse:
        finish = await self.generate(self.engine_request(request))
        params = request.parameters
        prefix = request.inputs if params.return_full_text else ""
        details = None
        if params.details or params.decoder_input_details:  # as on TGI, the prompt's details are details
            details = Details(
                finish_reason=finish.finish_reason,
                generated_tokens=finish.generated_tokens,
                seed=finish.seed,
                prefill=[PrefillToken(id=t.id, text=t.text, logprob=_logprob(t)) for t in finish.prefill],
                tokens=[_token(t) for t in finish.tokens],
                top_tokens=[[_token(top) for top in t.top_tokens] for t in finish.tokens]
                if params.top_n_tokens
                else [],
            )
        return GenerateResponse(generated_text=prefix + finish.generated_text, details=details)

    async def generate_stream(self, request: GenerateRequest) -> EventSourceResponse:
        params = request.parameters
        prefix = request.inputs if params.return_full_text else ""
        opened = await self.stream(self.engine_request(request))

        async def body() -> AsyncIterator[str]:
            index = 0
            try:
                async for token, finish in self.events(*opened):
                    index += 1
                    event = StreamResponse(
                        index=index, token=_token(token), top_tokens=[_token(t) for t in token.top_tokens]
                    )
                    if finish is not None:
                        event.generated_text = prefix + finish.generated_text
                        if params.details:
                            event.details = StreamDetails(
                                finish_reason=finish.finish_reason,
                                generated_tokens=finish.generated_tokens,
                                input_length=finish.input_tokens,
                                seed=finish.seed,
                            )
                    yield event.model_dump_json()
            except _Failure as failure:
                yield json.dumps(failure.body())

        return EventSourceResponse(body(), sep="\n")

    def info(self) -> Info:
        engine = self.engine
        return Info(
            model_id=engine.model_id,
            max_concurrent_requests=engine.max_concurrent_requests,
            max_input_tokens=engine.max_input_tokens,
            max_total_tokens=engine.max_total_tokens,
            version=_VERSION,
        )

    # -- OpenAI-compatible ---------------------------------------------------------------------------------

    def openai_request(self, prompt: str, request: CompletionRequest | ChatRequest) -> EngineRequest:
        return EngineRequest(
            prompt=prompt,
            params=request.to_generation_params(self.engine.max_total_tokens),
            default_max_new_tokens=request.max_tokens is None,  # the engine fits it after tokenizing
        )

    def chat_prompt(self, request: ChatRequest) -> str:
        """The chat template applied to the messages; a leading BOS is dropped, as the engine adds it."""
        tokenizer = self.engine.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise _Failure("validation", "Input validation error: the model has no chat template")
        try:
            messages = [{"role": m.role, "content": m.text()} for m in request.messages]
            prompt = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        except Exception as error:  # jinja raises for conversations the template refuses
            raise _Failure("validation", f"Input validation error: {error}") from error
        bos = tokenizer.bos_token
        return prompt[len(bos) :] if bos and prompt.startswith(bos) else prompt

    def _ids(self, kind: str) -> dict[str, Any]:
        return {
            "id": f"{kind}-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.engine.model_id,
            "system_fingerprint": self.fingerprint,
        }

    async def completion(self, request: CompletionRequest) -> CompletionResponse | EventSourceResponse:
        engine_request = self.openai_request(request.text, request)
        ids = self._ids("cmpl")
        if not request.stream:
            finish = await self.generate(engine_request)
            text = cut_at_stop(finish.generated_text, request.stop)
            choice = CompletionChoice(text=text, finish_reason=finish_reason(finish.finish_reason))
            return CompletionResponse(**ids, choices=[choice], usage=_usage(finish))

        def chunk(text: str, finish: FinishEvent | None) -> str:
            reason = finish_reason(finish.finish_reason) if finish else ""
            choices = [CompletionChoice(text=text, finish_reason=reason)]
            return CompletionChunk(**ids, choices=choices).model_dump_json(exclude_none=True)

        def usage_chunk(finish: FinishEvent) -> str:
            return CompletionChunk(**ids, choices=[], usage=_usage(finish)).model_dump_json()

        return await self._openai_stream(engine_request, request, chunk, usage_chunk)

    async def chat_completion(self, request: ChatRequest) -> ChatCompletionResponse | EventSourceResponse:
        engine_request = self.openai_request(self.chat_prompt(request), request)
        ids = self._ids("chatcmpl")
        if not request.stream:
            finish = await self.generate(engine_request)
            message = AssistantMessage(content=cut_at_stop(finish.generated_text, request.stop))
            choice = ChatChoice(message=message, finish_reason=finish_reason(finish.finish_reason))
            return ChatCompletionResponse(**ids, choices=[choice], usage=_usage(finish))

        def chunk(text: str, finish: FinishEvent | None) -> str:
            reason = finish_reason(finish.finish_reason) if finish else None
            choices = [ChatChunkChoice(delta=AssistantMessage(content=text), finish_reason=reason)]
            return ChatCompletionChunk(**ids, choices=choices).model_dump_json()

        def usage_chunk(finish: FinishEvent) -> str:
            return ChatCompletionChunk(**ids, choices=[], usage=_usage(finish)).model_dump_json()

        # As OpenAI does, the first chunk only says who speaks.
        return await self._openai_stream(engine_request, request, chunk, usage_chunk, chunk("", None))

    async def _openai_stream(
        self,
        engine_request: EngineRequest,
        request: CompletionRequest | ChatRequest,
        chunk: Callable[[str, FinishEvent | None], str],
        usage_chunk: Callable[[FinishEvent], str],
        opening: str | None = None,
    ) -> EventSourceResponse:
        """An OpenAI stream: the ``opening`` chunk, a chunk per token (stop sequences held back and cut),
        the finish reason on the last (which completes the text to the non-streamed answer's), then the
        usage chunk if asked for and ``[DONE]``."""
        opened = await self.stream(engine_request)

        async def body() -> AsyncIterator[str]:
            trimmer = StopTrimmer(request.stop)
            if opening is not None:
                yield opening
            try:
                async for token, finish in self.events(*opened):
                    text = "" if token.special else trimmer.feed(token.text)
                    if finish is not None:
                        yield chunk(text + trimmer.finish(finish.generated_text), finish)
                        if request.include_usage:
                            yield usage_chunk(finish)
                    elif text:
                        yield chunk(text, None)
            except _Failure as failure:
                yield json.dumps(failure.body())
                return
            yield "[DONE]"

        return EventSourceResponse(body(), sep="\n")

    def models(self) -> ModelList:
        card = ModelCard(
            id=self.engine.model_id, created=self.created, max_model_len=self.engine.max_total_tokens
        )
        return ModelList(data=[card], id=card.id, created=card.created)


def create_app(
    engine: BatchingEngine,
    *,
    api_key: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    request_body_timeout: float = DEFAULT_REQUEST_BODY_TIMEOUT,
) -> FastAPI:
    """Build the server's app around ``engine``; the engine starts and stops with the app (its lifespan).

    Args:
        engine: The batching engine that runs the model.
        api_key: If set, the generation routes and ``/tokenize`` need ``Authorization: Bearer <api_key>``
            (else 401, before the body is read); ``/health``, ``/info``, ``/metrics`` and ``/v1/models`` stay
            open, as on TGI.
        max_request_bytes: Largest request body accepted; larger ones get 413.
        request_body_timeout: Seconds to wait for the next piece of a request body; then 408.
    """
    server = _Server(engine, api_key)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine:
            server.ready = True
            yield
            server.ready = False

    # No redirect from /generate/ to /generate: as on TGI, a path is found as written or not at all.
    app = FastAPI(title="langchain-aligner", version=_VERSION, lifespan=lifespan, redirect_slashes=False)
    app.state.server = server
    app.add_middleware(_BodyLimit, max_bytes=max_request_bytes, timeout=request_body_timeout)
    app.add_middleware(CancelOnDisconnect)  # a client that leaves frees its row, streamed or not

    @app.exception_handler(_Failure)
    async def _on_failure(_: Request, failure: _Failure) -> JSONResponse:
        return JSONResponse(failure.body(), failure.status)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        """A body refused while parsing: TGI's 422, counted as a request that failed validation."""
        failure = _Failure("validation", _validation_message(error))
        server.metrics.received()
        server.metrics.failed(failure)
        return JSONResponse(failure.body(), failure.status)

    @app.exception_handler(HTTPException)
    async def _on_http(_: Request, error: HTTPException) -> JSONResponse:
        error_type = HTTP_ERROR_TYPES.get(error.status_code, "http")
        body = ErrorResponse(error=str(error.detail), error_type=error_type)
        return JSONResponse(body.model_dump(), error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def _on_bug(_: Request, error: Exception) -> JSONResponse:
        """Anything else still gets TGI's error body; uvicorn then closes the connection, and says so."""
        failure = _failure(error)
        return JSONResponse(failure.body(), failure.status, headers={"Connection": "close"})

    def open_get(path: str, **options: Any) -> Callable[[_Endpoint], _Endpoint]:
        """A GET route without the API key that answers HEAD too, as axum's GET routes do on TGI (load
        balancers probe ``/health`` with HEAD); HEAD stays out of the OpenAPI document."""

        def register(endpoint: _Endpoint) -> _Endpoint:
            app.head(path, include_in_schema=False, **options)(endpoint)
            return app.get(path, **options)(endpoint)

        return register

    @open_get("/health", response_class=Response)
    async def health() -> Response:
        """200 once the engine runs, else 503."""
        if not server.ready or not engine.accepting:  # starting, or draining before shutdown
            unhealthy = ErrorResponse(error="unhealthy", error_type="healthcheck")
            return JSONResponse(unhealthy.model_dump(), ERROR_STATUS["healthcheck"])
        return Response(status_code=200)

    api = APIRouter(route_class=_APIRoute)

    @api.post("/generate", response_model=GenerateResponse)
    async def generate(request: GenerateRequest) -> GenerateResponse:
        """Generate text (TGI's ``/generate``)."""
        return await server.generate_response(request)

    @api.post("/generate_stream", response_class=EventSourceResponse)
    async def generate_stream(request: GenerateStreamRequest) -> EventSourceResponse:
        """Generate text as Server-Sent Events (TGI's ``/generate_stream``)."""
        return await server.generate_stream(request)

    @api.post("/", response_model=None)
    async def compat_generate(request: CompatGenerateRequest) -> list[GenerateResponse] | EventSourceResponse:
        """TGI's compatibility route: a stream if ``stream`` is true, else a one-element list."""
        if request.stream:
            return await server.generate_stream(request)
        return [await server.generate_response(request)]

    @open_get("/info", response_model=Info)
    async def info() -> Info:
        """The model and the server's limits."""
        return server.info()

    @open_get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.post("/tokenize", response_model=list[SimpleToken])
    async def tokenize(request: GenerateRequest) -> list[SimpleToken]:
        """The prompt's tokens (BOS included) with their character spans."""
        return [
            SimpleToken(id=i, text=text, start=start, stop=stop)
            for i, text, start, stop in await engine.tokenize(request.inputs)
        ]

    @api.post("/v1/completions", response_model=None)
    async def completions(request: CompletionRequest) -> CompletionResponse | EventSourceResponse:
        """OpenAI-compatible completions (one prompt)."""
        return await server.completion(request)

    @api.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> ChatCompletionResponse | EventSourceResponse:
        """OpenAI-compatible chat completions, with the tokenizer's chat template."""
        return await server.chat_completion(request)

    @open_get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        """The served model (an OpenAI model list that is also TGI's ``ModelInfo``)."""
        return server.models()

    app.include_router(api)
    return app
