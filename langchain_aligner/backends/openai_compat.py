"""Any OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, TGI) through the ``openai`` client."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI, OpenAI
from openai.types import Completion

from langchain_aligner.backends._loop_local import LoopLocal
from langchain_aligner.backends.base import (
    AlignerBackend,
    Generation,
    GenerationDelta,
    malformed_reply,
    server_error,
)
from langchain_aligner.errors import AlignerBackendError, AlignerTimeoutError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.wire.openai_compat import (
    CompletionStream,
    SamplingFields,
    completion_generation,
    read_error,
)

__all__ = ["OpenAICompatBackend", "openai_error"]

logger = logging.getLogger(__name__)


def openai_error(error: Exception) -> AlignerBackendError:
    """Translate an ``openai`` exception into :class:`AlignerBackendError` (429/5xx/connection retryable),
    with the message and error type its body holds (:func:`~langchain_aligner.wire.openai_compat.read_error`);
    anything else is a reply that is not a completion."""
    if isinstance(error, AlignerBackendError):
        return error
    if isinstance(error, openai.APITimeoutError):
        return AlignerTimeoutError(f"the completions server did not answer in time: {error}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        try:
            message, error_type = read_error(error.response.json())
        except ValueError:  # not JSON
            message, error_type = None, None
        return server_error(
            f"completions server HTTP {status}: {message or error.message}",
            status=status,
            error_type=error_type,
        )
    if isinstance(error, openai.APIConnectionError):
        return AlignerBackendError(f"cannot reach the completions server: {error}", retryable=True)
    if isinstance(error, openai.APIError):  # an error event in a stream: the client keeps its "error" only
        message, error_type = read_error({"error": error.body})
        return AlignerBackendError(
            f"completions server error: {message or error.message}", error_type=error_type or error.type
        )
    return malformed_reply("the completions server", error)


def _arguments(model: str, params: GenerationParams) -> dict[str, Any]:
    """``completions.create`` keyword arguments for ``params`` (the wire's :class:`SamplingFields`)."""
    return {"model": model, **SamplingFields.of(params).arguments()}


class OpenAICompatBackend(AlignerBackend):
    """Calls ``/v1/completions`` on an OpenAI-compatible server.

    Args:
        url: The server root (``http://host:8000``) or its ``/v1`` base.
        model: Model name to request; defaults to the first model ``/v1/models`` lists.
        timeout: Seconds to wait for the server.
        api_key: Bearer token (servers started without one accept any value).
        headers: Extra HTTP headers.

    ``max_total_tokens`` (the context length: prompt plus completion) is vLLM's ``max_model_len`` from
    ``/v1/models`` when listed; tokens are counted with vLLM's ``/tokenize`` when the server has it.
    """

    name = "openai"

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        timeout: float | None = 60.0,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        root = url.rstrip("/").removesuffix("/v1")
        self.url = root
        self.timeout = timeout
        kwargs: dict[str, Any] = {
            "base_url": f"{root}/v1",
            "api_key": api_key or "EMPTY",
            "timeout": timeout,
            "max_retries": 0,  # AlignerRunnable applies one retry policy to every backend
            "default_headers": headers,
        }
        self._client = OpenAI(**kwargs)
        self._async_client = LoopLocal(lambda: AsyncOpenAI(**kwargs))
        self._model = model
        self._model_info: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The configured model, else the listed one once read, else the URL."""
        return self._model or str((self._model_info or {}).get("id") or self.url)

    def _served_model(self) -> str:
        """The model to request: the configured one, else the first of ``/v1/models``."""
        return self._model or str(self._listed_model()["id"])

    def _listed_model(self) -> dict[str, Any]:
        """The served model's entry in ``/v1/models`` (read once)."""
        with self._lock:
            if self._model_info is None:
                try:
                    models = self._client.models.list().data
                except openai.OpenAIError as error:
                    raise openai_error(error) from error
                if not models:
                    raise AlignerBackendError(f"{self.url}/v1/models lists no model")
                chosen = next((m for m in models if m.id == self._model), models[0])
                self._model_info = chosen.model_dump()
            return self._model_info

    def max_total_tokens(self) -> int | None:
        try:
            value = self._listed_model().get("max_model_len")
        except AlignerBackendError as error:
            logger.info("no model list from %s (%s); input limit unknown", self.url, error)
            return None
        return int(value) if value else None

    def count_tokens(self, text: str) -> int | None:
        try:
            response = self._client.post(
                f"{self.url}/tokenize",
                body={"model": self._served_model(), "prompt": text},
                cast_to=httpx.Response,
            )
            return int(response.json()["count"])
        except (openai.OpenAIError, AlignerBackendError, KeyError, ValueError) as error:
            logger.debug("cannot count tokens with %s/tokenize: %s", self.url, error)
            return None

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        try:
            completion = self._client.completions.create(
                prompt=prompt, **_arguments(self._served_model(), params)
            )
            return self._finished(completion)
        except Exception as error:
            raise openai_error(error) from error

    async def agenerate(self, prompt: str, params: GenerationParams) -> Generation:
        model = await asyncio.to_thread(self._served_model) if self._model is None else self._model
        client = self._async_client.get()
        try:
            completion = await client.completions.create(prompt=prompt, **_arguments(model, params))
            return self._finished(completion)
        except Exception as error:
            raise openai_error(error) from error

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[GenerationDelta]:
        arguments = _arguments(self._served_model(), params)
        state = CompletionStream(arguments["model"])
        try:
            with self._client.completions.create(
                prompt=prompt, **arguments, stream=True, stream_options={"include_usage": True}
            ) as chunks:
                for chunk in chunks:
                    if delta := state.add(chunk):
                        yield delta
            last = state.finish()
        except Exception as error:
            raise openai_error(error) from error
        yield last

    async def astream(self, prompt: str, params: GenerationParams) -> AsyncIterator[GenerationDelta]:
        model = await asyncio.to_thread(self._served_model) if self._model is None else self._model
        state = CompletionStream(model)
        client = self._async_client.get()
        try:
            chunks = await client.completions.create(
                prompt=prompt,
                **_arguments(model, params),
                stream=True,
                stream_options={"include_usage": True},
            )
            async with chunks:
                async for chunk in chunks:
                    if delta := state.add(chunk):
                        yield delta
            last = state.finish()
        except Exception as error:
            raise openai_error(error) from error
        yield last

    def _finished(self, completion: Any) -> Generation:
        if not isinstance(completion, Completion):  # the client hands a body that is not JSON back as is
            raise TypeError(
                f"the body is a {type(completion).__name__}, not a completion: {completion!r:.200}"
            )
        return completion_generation(completion, self.model_name)
