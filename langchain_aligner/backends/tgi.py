"""Text Generation Inference (TGI) backend: ``/generate`` and ``/generate_stream`` through huggingface_hub."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError
from huggingface_hub.utils import hf_raise_for_status

from langchain_aligner.backends._loop_local import LoopLocal
from langchain_aligner.backends._stops import StopTrimmer
from langchain_aligner.backends.base import (
    AlignerBackend,
    Generation,
    GenerationDelta,
    malformed_reply,
    server_error,
    stream_cut_short,
)
from langchain_aligner.errors import AlignerBackendError, AlignerTimeoutError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.wire.tgi import (
    ERROR_STATUS,
    GenerateParameters,
    GenerateResponse,
    StreamResponse,
    read_error,
)

__all__ = ["TGIBackend", "tgi_error"]

logger = logging.getLogger(__name__)

_UNKNOWN = object()


def tgi_error(error: Exception) -> AlignerBackendError:
    """Translate what huggingface_hub raises into :class:`AlignerBackendError`.

    An HTTP error carries its status on ``__cause__`` and the ``error_type`` its body names; an error event
    inside a stream has only the type (as huggingface_hub's class: TGI's four types), which maps back to the
    status TGI answers it with (``overloaded`` -> 429, ...). Anything else (a body that is not JSON, JSON of
    another shape) is a reply that is not a generation.
    """
    if isinstance(error, AlignerBackendError):
        return error
    if isinstance(error, (InferenceTimeoutError, httpx2.TimeoutException)):
        return AlignerTimeoutError(f"TGI did not answer in time: {error}")
    if isinstance(error, TextGenerationError):
        cause = error.__cause__
        if isinstance(cause, HfHubHTTPError):
            body = read_error(cause.response.content)
            error_type = body.error_type if body else _error_type_of(error)
            status: int | None = cause.response.status_code
        else:
            error_type = _error_type_of(error)
            status = ERROR_STATUS.get(error_type or "")
        return server_error(f"TGI error ({error_type}): {error}", status=status, error_type=error_type)
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        return server_error(f"TGI HTTP {status}: {error}", status=status)
    if isinstance(error, (httpx2.TransportError, OSError)):
        return AlignerBackendError(f"cannot reach TGI: {error!r}", retryable=True)
    return malformed_reply("TGI", error)


def _error_type_of(error: TextGenerationError) -> str | None:
    """TGI's ``error_type`` of huggingface_hub's error class (its ``UnknownError`` for any other type)."""
    by_class = {
        "ValidationError": "validation",
        "GenerationError": "generation",
        "OverloadedError": "overloaded",
        "IncompleteGenerationError": "incomplete_generation",
    }
    return by_class.get(type(error).__name__)


def _arguments(params: GenerationParams, *, decoder_input_details: bool = False) -> dict[str, Any]:
    """``text_generation`` keyword arguments for ``params``, with details (the finish reason and counts)."""
    wire = GenerateParameters.of(params, details=True, decoder_input_details=decoder_input_details)
    return wire.arguments()


class _InferenceClient(InferenceClient):
    """``InferenceClient`` on the backend's own HTTP client (see :func:`_async_http_client`)."""

    def __init__(self, http: httpx2.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http = http

    def _inner_post(self, request_parameters: Any, *, stream: bool = False) -> Any:
        """huggingface_hub's ``_inner_post`` for a URL, on ``self._http`` instead of the shared session
        (timeouts and HTTP errors are translated by :func:`tgi_error`)."""
        response_cm = self._http.stream(
            "POST",
            request_parameters.url,
            json=request_parameters.json,
            content=request_parameters.data,
            headers=request_parameters.headers,
            cookies=self.cookies,
            timeout=self.timeout,
        )
        if stream:
            response = self.exit_stack.enter_context(response_cm)
            hf_raise_for_status(response)
            return response.iter_lines()
        with response_cm as response:
            hf_raise_for_status(response)
            return response.read()


def _async_http_client() -> httpx2.AsyncClient:
    """An HTTP client like huggingface_hub's, without its offline guard.

    huggingface_hub's sessions refuse every request under ``HF_HUB_OFFLINE=1`` (``OfflineModeIsEnabled``),
    a TGI on 127.0.0.1 included; the backend talks to the URL it was given, so it uses its own clients. An
    error response is read at once, so that an error in a stream can be parsed (as huggingface_hub does).
    """

    async def read_errors(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            await response.aread()

    return httpx2.AsyncClient(event_hooks={"response": [read_errors]}, follow_redirects=True, timeout=None)


class TGIBackend(AlignerBackend):
    """Calls a TGI server (or anything that speaks TGI's ``/generate`` API, like ``langchain-aligner serve``).

    The prompt is sent as is: TGI adds the BOS token itself. Token counts come from TGI's ``details``:
    ``/generate_stream`` reports the input length, ``/generate`` the prompt's tokens when asked for them
    (``decoder_input_details``, as TGI's own ``/v1/completions`` asks to report usage).
    ``/info`` is read once for the token limits and the model id; ``/tokenize`` counts tokens. Requests
    go to ``url`` even with ``HF_HUB_OFFLINE=1`` (which only keeps huggingface_hub off the Hub).

    Args:
        url: Base URL of the server, e.g. ``http://127.0.0.1:8080``.
        model: Name reported in metadata; defaults to the ``model_id`` from ``/info``.
        timeout: Seconds to wait for the server (``None``: no limit).
        api_key: Bearer token, for Inference Endpoints or a proxy.
        headers: Extra HTTP headers.
    """

    name = "tgi"

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        timeout: float | None = 60.0,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._model = model
        self._client_kwargs: dict[str, Any] = {"timeout": timeout, "api_key": api_key, "headers": headers}
        self._http = httpx2.Client(follow_redirects=True, timeout=None)
        self._client = _InferenceClient(self._http, **self._client_kwargs)
        self._async_http = LoopLocal(_async_http_client)
        self._async_client = LoopLocal(self._make_async_client)
        self._info: dict[str, Any] | object = _UNKNOWN
        self._info_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The configured model, else ``model_id`` from ``/info``, else the URL."""
        return self._model or str(self.info().get("model_id") or self.url)

    def info(self) -> dict[str, Any]:
        """The server's ``/info``, or ``{}`` if it has none (read once; again after a failed connection)."""
        with self._info_lock:
            if self._info is _UNKNOWN:
                try:
                    response = self._http.get(
                        f"{self.url}/info", headers=self._headers(), timeout=self.timeout
                    )
                    response.raise_for_status()
                    self._info = response.json()
                except httpx2.TransportError as error:
                    logger.info("cannot read %s/info yet: %s", self.url, error)
                    return {}
                except (httpx2.HTTPError, ValueError) as error:
                    logger.info("no /info from %s (%s); input limit unknown", self.url, error)
                    self._info = {}
            assert isinstance(self._info, dict)
            return self._info

    def max_input_tokens(self) -> int | None:
        value = self.info().get("max_input_tokens")
        return int(value) if value else None

    def max_total_tokens(self) -> int | None:
        value = self.info().get("max_total_tokens")
        return int(value) if value else None

    def count_tokens(self, text: str) -> int | None:
        """Count tokens with the server's ``/tokenize`` route (BOS included, as ``/generate`` counts)."""
        try:
            response = self._http.post(
                f"{self.url}/tokenize",
                json={"inputs": text},
                headers=self._headers(),
                timeout=self.timeout,
            )
            response.raise_for_status()
        except httpx2.HTTPError as error:
            logger.debug("cannot count tokens with %s/tokenize: %s", self.url, error)
            return None
        return len(response.json())

    def _headers(self) -> dict[str, str]:
        headers = dict(self._client_kwargs["headers"] or {})
        if self._client_kwargs["api_key"]:
            headers["authorization"] = f"Bearer {self._client_kwargs['api_key']}"
        return headers

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        arguments = _arguments(params, decoder_input_details=True)
        try:
            output = self._client.text_generation(prompt, model=f"{self.url}/generate", **arguments)
            response = GenerateResponse.model_validate(output)
        except Exception as error:
            raise tgi_error(error) from error
        return response.generation(params.stop, self.model_name)

    async def agenerate(self, prompt: str, params: GenerationParams) -> Generation:
        client = self._async_client.get()
        arguments = _arguments(params, decoder_input_details=True)
        try:
            output = await client.text_generation(prompt, model=f"{self.url}/generate", **arguments)
            response = GenerateResponse.model_validate(output)
        except Exception as error:
            raise tgi_error(error) from error
        return response.generation(params.stop, self.model_name)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[GenerationDelta]:
        # A client per stream: huggingface_hub keeps a stream's response open until its client is closed.
        with _InferenceClient(self._http, **self._client_kwargs) as client:
            trimmer = StopTrimmer(params.stop)
            try:
                events = client.text_generation(
                    prompt, model=f"{self.url}/generate_stream", stream=True, **_arguments(params)
                )
                finished = False
                for event in events:
                    for delta in self._deltas(event, trimmer, params):
                        finished = delta.generation is not None
                        yield delta
                if not finished:
                    raise stream_cut_short("TGI")
            except Exception as error:
                raise tgi_error(error) from error

    async def astream(self, prompt: str, params: GenerationParams) -> AsyncIterator[GenerationDelta]:
        async with self._stream_client() as client:
            trimmer = StopTrimmer(params.stop)
            try:
                events = await client.text_generation(
                    prompt, model=f"{self.url}/generate_stream", stream=True, **_arguments(params)
                )
                finished = False
                async for event in events:
                    for delta in self._deltas(event, trimmer, params):
                        finished = delta.generation is not None
                        yield delta
                if not finished:
                    raise stream_cut_short("TGI")
            except Exception as error:
                raise tgi_error(error) from error

    def _make_async_client(self) -> AsyncInferenceClient:
        """An async client on this loop's connection pool (see :func:`_async_http_client`).

        A client per stream is closed with it (huggingface_hub keeps a stream open until its client closes);
        sharing the pool saves a TLS context (~30 ms) per stream.
        """
        client = AsyncInferenceClient(**self._client_kwargs)
        client._async_client = self._async_http.get()
        return client

    _stream_client = _make_async_client

    def _deltas(
        self, event: Any, trimmer: StopTrimmer, params: GenerationParams
    ) -> Iterator[GenerationDelta]:
        """The piece of text ``event`` adds (stop sequences held back and cut); the last piece, with the
        whole generation, completes the pieces to its text."""
        event = StreamResponse.model_validate(event)
        text = "" if event.token.special else trimmer.feed(event.token.text)
        finished = event.generation(params.stop, self.model_name)
        if finished is not None:
            yield GenerationDelta(text + trimmer.finish(finished.text), generation=finished)
        elif text:
            yield GenerationDelta(text)
