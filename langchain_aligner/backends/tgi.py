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
from langchain_aligner.backends._stops import StopTrimmer, cut_at_stop
from langchain_aligner.backends.base import (
    AlignerBackend,
    Generation,
    GenerationDelta,
    malformed_reply,
    stream_cut_short,
)
from langchain_aligner.errors import AlignerBackendError, AlignerTimeoutError
from langchain_aligner.generation import GenerationParams

__all__ = ["TGIBackend", "tgi_error"]

logger = logging.getLogger(__name__)

#: TGI's ``error_type`` values and the HTTP status TGI answers them with (tgi-openapi.json).
ERROR_TYPE_STATUS = {"validation": 422, "generation": 424, "overloaded": 429, "incomplete_generation": 500}
_UNKNOWN = object()


def _retryable(status: int | None) -> bool:
    return status is not None and (status == 429 or status >= 500)


def tgi_error(error: Exception) -> AlignerBackendError:
    """Translate what huggingface_hub raises into :class:`AlignerBackendError`.

    HTTP errors carry the status on ``__cause__``; an error event inside a stream has only TGI's
    ``error_type``, which maps back to the status TGI uses for it (``overloaded`` -> 429, ...). Anything
    else (a body that is not JSON, JSON of another shape) is a reply that is not a generation.
    """
    if isinstance(error, AlignerBackendError):
        return error
    if isinstance(error, (InferenceTimeoutError, httpx2.TimeoutException)):
        return AlignerTimeoutError(f"TGI did not answer in time: {error}")
    if isinstance(error, TextGenerationError):
        error_type = _error_type_of(error)
        cause = error.__cause__
        status = cause.response.status_code if isinstance(cause, HfHubHTTPError) else None
        status = status or ERROR_TYPE_STATUS.get(error_type or "")
        return AlignerBackendError(
            f"TGI error ({error_type}): {error}",
            status=status,
            error_type=error_type,
            retryable=_retryable(status),
        )
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        return AlignerBackendError(f"TGI HTTP {status}: {error}", status=status, retryable=_retryable(status))
    if isinstance(error, (httpx2.TransportError, OSError)):
        return AlignerBackendError(f"cannot reach TGI: {error!r}", retryable=True)
    return malformed_reply("TGI", error)


def _error_type_of(error: TextGenerationError) -> str | None:
    by_class = {
        "ValidationError": "validation",
        "GenerationError": "generation",
        "OverloadedError": "overloaded",
        "IncompleteGenerationError": "incomplete_generation",
    }
    return by_class.get(type(error).__name__)


def _tgi_parameters(params: GenerationParams) -> dict[str, Any]:
    """Map :class:`GenerationParams` to ``text_generation`` keyword arguments (already valid for TGI)."""
    return {
        "max_new_tokens": params.max_new_tokens,
        "do_sample": params.do_sample,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "repetition_penalty": params.repetition_penalty,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "details": True,
    }


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
        try:
            output = self._client.text_generation(
                prompt, model=f"{self.url}/generate", decoder_input_details=True, **_tgi_parameters(params)
            )
        except Exception as error:
            raise tgi_error(error) from error
        return self._finished(output.generated_text, output.details, params)

    async def agenerate(self, prompt: str, params: GenerationParams) -> Generation:
        client = self._async_client.get()
        try:
            output = await client.text_generation(
                prompt, model=f"{self.url}/generate", decoder_input_details=True, **_tgi_parameters(params)
            )
        except Exception as error:
            raise tgi_error(error) from error
        return self._finished(output.generated_text, output.details, params)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[GenerationDelta]:
        # A client per stream: huggingface_hub keeps a stream's response open until its client is closed.
        with _InferenceClient(self._http, **self._client_kwargs) as client:
            trimmer = StopTrimmer(params.stop)
            try:
                events = client.text_generation(
                    prompt, model=f"{self.url}/generate_stream", stream=True, **_tgi_parameters(params)
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
                    prompt, model=f"{self.url}/generate_stream", stream=True, **_tgi_parameters(params)
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
        token = event.token
        text = "" if token.special else trimmer.feed(token.text)
        if event.details is None:
            if text:
                yield GenerationDelta(text)
            return
        tail = trimmer.flush()
        details = event.details
        finished = Generation(
            text=cut_at_stop(event.generated_text or "", params.stop),
            prompt_tokens=details.input_length,
            completion_tokens=details.generated_tokens,
            finish_reason=details.finish_reason,
            model=self.model_name,
        )
        yield GenerationDelta(text + tail, generation=finished)

    def _finished(self, text: str, details: Any, params: GenerationParams) -> Generation:
        return Generation(
            text=cut_at_stop(text, params.stop),
            prompt_tokens=len(details.prefill) if details and details.prefill else None,
            completion_tokens=details.generated_tokens if details else None,
            finish_reason=details.finish_reason if details else None,
            model=self.model_name,
        )
