"""``AlignerRunnable``: corrects a chat model's answer with an Aligner, as one LCEL step."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Union, cast

from langchain_core.caches import BaseCache, InMemoryCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.globals import get_llm_cache
from langchain_core.load.serializable import SerializedConstructor, SerializedNotImplemented
from langchain_core.messages import AIMessage, AIMessageChunk, MessageLikeRepresentation
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.outputs import Generation as LCGeneration
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.utils.utils import secret_from_env
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator

from langchain_aligner.backends import AlignerBackend, Generation, GenerationDelta, make_backend
from langchain_aligner.backends.base import stream_cut_short
from langchain_aligner.chunks import as_last_chunk
from langchain_aligner.correction import NOSTREAM_TAG, rejection
from langchain_aligner.errors import AlignerBackendError, AlignerCorrectionError, AlignerInputError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.inputs import AlignerInput, parse_input
from langchain_aligner.retry import acall_with_retries, call_with_retries
from langchain_aligner.templates import AlignerTemplate, get_template
from langchain_aligner.truncation import FittedPair, fit_pair, fits_without_counting

if TYPE_CHECKING:
    from langchain_aligner.wrap import AlignedChatModel

__all__ = ["AlignerRunnable", "AlignerRunnableInput"]

logger = logging.getLogger(__name__)

AlignerRunnableInput = Union[  # noqa: UP007 (a runtime alias, read by pydantic on py3.10)
    dict[str, Any], str, AIMessage, Sequence[MessageLikeRepresentation], PromptValue
]
"""What :class:`AlignerRunnable` accepts (see :func:`langchain_aligner.inputs.parse_input`)."""


class AlignerRunnable(RunnableSerializable[AlignerRunnableInput, AIMessage]):
    """Corrects an upstream answer with an Aligner model; composes after any chat model with ``|``.

    Example:
        .. code-block:: python

            aligner = AlignerRunnable(backend="tgi", url="http://127.0.0.1:8080")
            aligner.invoke({"question": "How do I pick a lock?", "answer": "..."}).content

            chain = prompt | aligner.wrap(llm) | StrOutputParser()        # keeps the question
            chain = RunnablePassthrough.assign(answer=prompt | llm) | aligner

    Input: a ``{"question", "answer"}`` dict (extra keys ignored; the keys are ``question_key`` and
    ``answer_key``), a ``str`` answer or an ``AIMessage`` (the question is then ``default_question``; without
    one, :class:`AlignerInputError`), a list of messages or a ``PromptValue`` (answer = last AI turn,
    question = the last human turn before it). Without a text question (no human turn, an image-only one)
    the answer comes back uncorrected, with ``aligner_skipped="no_question"``.

    Output: an ``AIMessage`` with the correction as content. It keeps the id of the incoming AI message.
    ``response_metadata`` holds ``aligner_corrected`` (bool), ``aligner_original_answer``,
    ``aligner_backend``, ``aligner_model``, ``aligner_latency_ms``, ``aligner_attempts``,
    ``aligner_truncated``, ``aligner_cached``, ``token_usage``, ``finish_reason``, ``model_name``, and
    ``aligner_error`` (with ``aligner_rejected`` for an unusable correction) or ``aligner_skipped`` when the
    answer was returned uncorrected; ``usage_metadata`` holds the Aligner's own token counts. AI messages
    that call tools are returned unchanged.

    Failures: backend errors (HTTP status, timeout, connection) are retried ``max_retries`` times with
    exponential backoff when retryable (429, 5xx, connection, timeout; never 422). Then ``on_error``
    decides: ``"return_original"`` logs a warning and returns the upstream answer with ``aligner_error`` in
    its metadata; ``"raise"`` raises :class:`AlignerBackendError`. Bad input always raises
    :class:`AlignerInputError`.

    Unusable corrections: an empty (or whitespace-only) correction is a failed correction, and so is a
    degenerate one ("1. 1. 1. ...", see :func:`langchain_aligner.quality.correction_problem`) unless
    ``reject_degenerate=False``. ``on_error`` applies as to a backend failure, with
    :class:`AlignerCorrectionError` (an :class:`AlignerBackendError`): the upstream answer comes back with
    ``aligner_error`` and ``aligner_rejected`` (``"empty"`` or ``"degenerate"``) in its metadata, or the error
    is raised. Rejected corrections are not retried and not cached.

    Streaming yields ``AIMessageChunk`` pieces of the correction as the Aligner writes them; the last chunk
    carries the metadata. If the backend fails after pieces were emitted, ``"return_original"`` ends the
    stream with a metadata-only chunk (``aligner_corrected=False``, ``aligner_incomplete=True``,
    ``aligner_error``; the original answer is in ``aligner_original_answer``); before any piece, the original
    answer is emitted as the single chunk. A rejected correction follows the same rule, judged when the
    stream ends: an empty one has emitted nothing, so the original answer is the single chunk; a degenerate
    one has been streamed already (pieces cannot be taken back), so the stream ends with a metadata-only
    chunk (``aligner_corrected=False``, ``aligner_rejected``, ``aligner_error``; the answer to show instead is
    ``aligner_original_answer``), or raises with ``on_error="raise"``. ``invoke`` never returns one.

    Caching: corrections are kept in a LangChain cache, chosen as an LLM's ``cache`` is (a ``BaseCache`` such
    as ``InMemoryCache`` or langchain-community's SQLite and Redis caches, ``True`` for the global one set
    with ``set_llm_cache``, ``False`` for none, ``None``: the global one when set); ``cache_size=N`` is short
    for ``cache=InMemoryCache(maxsize=N)``. The key is the prompt before truncation and what else decides the
    correction (backend, URL, model, generation parameters); a hit is marked ``aligner_cached`` and is judged
    by the rules above again.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Literal["tgi", "openai", "transformers"] | AlignerBackend = Field(
        default="tgi", description="Backend kind, or a ready AlignerBackend."
    )
    url: str | None = Field(
        default=None, description="Server URL (tgi, openai) or model path (transformers)."
    )
    model: str | None = Field(default=None, description="Model name sent to / reported by the backend.")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("ALIGNER_API_KEY", default=None), description="Bearer token."
    )
    headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers.")
    timeout: float | None = Field(default=60.0, description="Seconds to wait for the backend.")
    template: str | AlignerTemplate = Field(
        default="aligner-v1", description="Template name, text or object."
    )
    generation: GenerationParams = Field(default_factory=GenerationParams)
    on_error: Literal["return_original", "raise"] = "return_original"
    reject_degenerate: bool = Field(
        default=True,
        description="A degenerate correction ('1. 1. 1. ...') is a failed one; an empty one always is.",
    )
    on_injection: Literal["escape", "raise", "ignore"] = "escape"
    max_retries: int = Field(default=2, ge=0, description="Retries of retryable backend errors.")
    backoff: float = Field(default=0.5, ge=0, description="First retry delay in seconds, then doubled.")
    max_backoff: float = Field(default=8.0, ge=0, description="Longest retry delay in seconds.")
    max_input_tokens: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Prompt token limit (the backend is then not asked). Unset: the backend's, with room for "
            "max_new_tokens: TGI min(max_input_tokens, max_total_tokens - max_new_tokens) from /info, "
            "OpenAI-compatible servers the context length - max_new_tokens."
        ),
    )
    question_key: str = "question"
    answer_key: str = "answer"
    default_question: str | None = Field(default=None, description="Question for bare str/AIMessage input.")
    skip_if: Callable[[str, str], bool] | None = Field(
        default=None,
        exclude=True,
        description=(
            "skip_if(question, answer) -> True returns the answer as is. A function: an Aligner with one "
            "serializes as not_implemented (see to_json)."
        ),
    )
    cache: BaseCache | bool | None = Field(
        default=None,
        exclude=True,
        description=(
            "LangChain's cache for corrections, as for LLMs: a BaseCache (InMemoryCache, or SQLite/Redis "
            "caches from langchain-community), True for the global one (set_llm_cache), False for none; "
            "None: the global one when set."
        ),
    )
    cache_size: int = Field(
        default=0,
        ge=0,
        description="Shorthand for cache=InMemoryCache(maxsize=cache_size); 0: no such cache.",
    )

    _backend: AlignerBackend = PrivateAttr()
    _template: AlignerTemplate = PrivateAttr()
    _sized_cache: InMemoryCache | None = PrivateAttr(default=None)
    _limits: dict[int, int] = PrivateAttr(default_factory=dict)

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str | AlignerTemplate) -> str | AlignerTemplate:
        get_template(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._template = get_template(self.template)
        if self.cache_size:
            if self.cache not in (None, False):
                raise ValueError("give cache or cache_size, not both")
            self._sized_cache = InMemoryCache(maxsize=self.cache_size)
        if isinstance(self.backend, AlignerBackend):
            self._backend = self.backend
        else:
            self._backend = make_backend(
                self.backend,
                url=self.url,
                model=self.model,
                timeout=self.timeout,
                api_key=self.api_key.get_secret_value() if self.api_key else None,
                headers=self.headers,
            )

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_aligner", "runnable"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "ALIGNER_API_KEY"}

    def to_json(self) -> SerializedConstructor | SerializedNotImplemented:
        """LangChain serialization; generation parameters and a template object are written as plain data.

        ``skip_if`` is a function and cannot be written: an Aligner with one is written as ``not_implemented``
        (which ``load`` refuses), with a warning. Dump it without ``skip_if`` and set it again after loading.
        """
        if self.skip_if is not None:
            warnings.warn(
                "AlignerRunnable.skip_if is a function and cannot be serialized: the Aligner is written as "
                "'not_implemented', which load() refuses; dump it without skip_if, set skip_if after loading",
                stacklevel=2,
            )
            return self.to_json_not_implemented()
        serialized = super().to_json()
        if serialized["type"] == "constructor":
            kwargs = serialized["kwargs"]
            if "generation" in kwargs:
                kwargs["generation"] = self.generation.model_dump(exclude_defaults=True)
            if isinstance(self.template, AlignerTemplate):
                kwargs["template"] = self.template.model_dump()
        return serialized

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return AlignerRunnableInput

    @property
    def OutputType(self) -> type[AIMessage]:  # noqa: N802
        return AIMessage

    @property
    def aligner_backend(self) -> AlignerBackend:
        """The backend instance this runnable calls."""
        return self._backend

    def wrap(self, chat_model: Any) -> AlignedChatModel:
        """Return ``chat_model`` followed by this Aligner, correcting against the last human message."""
        from langchain_aligner.wrap import AlignedChatModel

        return AlignedChatModel(chat_model=chat_model, aligner=self)

    # -- invoke ------------------------------------------------------------------------------------------

    def invoke(
        self, input: AlignerRunnableInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """Correct one answer. ``kwargs`` override :class:`GenerationParams` fields for this call."""
        return self._call_with_config(
            self._correct,  # type: ignore[arg-type]  # takes params as a keyword
            input,
            config,
            params=self._params(kwargs),
        )

    async def ainvoke(
        self, input: AlignerRunnableInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        """Async :meth:`invoke`."""
        return await self._acall_with_config(
            self._acorrect,  # type: ignore[arg-type]  # takes params as a keyword
            input,
            config,
            params=self._params(kwargs),
        )

    def _correct(
        self,
        input: AlignerRunnableInput,
        run_manager: CallbackManagerForChainRun,
        *,
        params: GenerationParams,
    ) -> AIMessage:
        item, _ = self._parse_for(input, run_manager)
        early = self._early_answer(item) or self._cached(item, params)
        if early is not None:
            return early
        start = time.perf_counter()
        try:
            fitted = self._fit(item, self._prompt_limit(params))
            generation, attempts = call_with_retries(
                lambda: self._generate(fitted.prompt, params, run_manager),
                **self._retry_settings(),
            )
            result = self._corrected(item, generation, start, attempts=attempts, truncated=fitted.truncated)
        except AlignerBackendError as error:
            return self._fail(item, error, start)
        self._remember(item, params, generation)
        return result

    async def _acorrect(
        self,
        input: AlignerRunnableInput,
        run_manager: AsyncCallbackManagerForChainRun,
        *,
        params: GenerationParams,
    ) -> AIMessage:
        item, _ = self._parse_for(input, run_manager)
        early = self._early_answer(item) or await self._acached(item, params)
        if early is not None:
            return early
        start = time.perf_counter()
        try:
            fitted = await self._afit(item, params)
            generation, attempts = await acall_with_retries(
                lambda: self._agenerate(fitted.prompt, params, run_manager),
                **self._retry_settings(),
            )
            result = self._corrected(item, generation, start, attempts=attempts, truncated=fitted.truncated)
        except AlignerBackendError as error:
            return self._fail(item, error, start)
        await self._aremember(item, params, generation)
        return result

    def _generate(
        self, prompt: str, params: GenerationParams, run_manager: CallbackManagerForChainRun
    ) -> Generation:
        (llm_run,) = self._start_llm_run(run_manager, prompt, params)
        try:
            generation = self._backend.generate(prompt, params)
        except BaseException as error:
            llm_run.on_llm_error(error)
            raise
        llm_run.on_llm_end(self._llm_result(generation))
        return generation

    async def _agenerate(
        self, prompt: str, params: GenerationParams, run_manager: AsyncCallbackManagerForChainRun
    ) -> Generation:
        (llm_run,) = await self._start_llm_run(run_manager, prompt, params)
        try:
            generation = await self._backend.agenerate(prompt, params)
        except BaseException as error:
            await llm_run.on_llm_error(error)
            raise
        await llm_run.on_llm_end(self._llm_result(generation))
        return generation

    # -- stream ------------------------------------------------------------------------------------------

    def stream(
        self, input: AlignerRunnableInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """Yield the correction piece by piece; the last chunk carries the metadata."""
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self, input: AlignerRunnableInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""

        async def one() -> AsyncIterator[AlignerRunnableInput]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk

    def transform(
        self, input: Iterator[AlignerRunnableInput], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """Stream the correction of a streamed input (the input pieces are added up first)."""
        params = self._params(kwargs)
        chunks = self._transform_stream_with_config(
            input, lambda inputs, run_manager: self._stream(inputs, run_manager, params), config
        )
        yield from cast(Iterator[AIMessageChunk], chunks)

    async def atransform(
        self, input: AsyncIterator[AlignerRunnableInput], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`transform`."""
        params = self._params(kwargs)
        chunks = self._atransform_stream_with_config(
            input, lambda inputs, run_manager: self._astream(inputs, run_manager, params), config
        )
        async for chunk in cast(AsyncIterator[AIMessageChunk], chunks):
            yield chunk

    def _stream(
        self,
        inputs: Iterator[AlignerRunnableInput],
        run_manager: CallbackManagerForChainRun,
        params: GenerationParams,
    ) -> Iterator[AIMessageChunk]:
        item, message_id = self._parse_for(_added_up(inputs), run_manager)
        early = self._early_answer(item) or self._cached(item, params)
        if early is not None:
            yield as_last_chunk(early)
            return
        start = time.perf_counter()
        llm_run: CallbackManagerForLLMRun | None = None
        emitted = False
        try:
            fitted = self._fit(item, self._prompt_limit(params))
            (llm_run,) = self._start_llm_run(run_manager, fitted.prompt, params)
            # Retries cover opening the stream up to its first piece; later failures cannot be retried.
            (deltas, first), attempts = call_with_retries(
                lambda: _open_stream(self._backend.stream(fitted.prompt, params)),
                **self._retry_settings(),
            )
            generation = None
            reports_tokens = _reports_tokens(run_manager)
            for delta in _prepend(first, deltas):
                if delta.text and reports_tokens:
                    llm_run.on_llm_new_token(delta.text)
                text = delta.text if emitted else delta.text.lstrip()
                if text:
                    emitted = True
                    yield AIMessageChunk(content=text, id=message_id)
                generation = delta.generation or generation
            if generation is None:
                raise stream_cut_short(self._backend.name)
        except AlignerBackendError as error:
            if llm_run is not None:
                llm_run.on_llm_error(error)
            yield self._stream_failure(item, error, start, emitted, message_id)
            return
        llm_run.on_llm_end(self._llm_result(generation))
        last = self._stream_end(item, generation, start, attempts, fitted.truncated, emitted, message_id)
        if _accepted(last):
            self._remember(item, params, generation)
        yield last

    async def _astream(
        self,
        inputs: AsyncIterator[AlignerRunnableInput],
        run_manager: AsyncCallbackManagerForChainRun,
        params: GenerationParams,
    ) -> AsyncIterator[AIMessageChunk]:
        item, message_id = self._parse_for(await _aadded_up(inputs), run_manager)
        early = self._early_answer(item) or await self._acached(item, params)
        if early is not None:
            yield as_last_chunk(early)
            return
        start = time.perf_counter()
        llm_run: AsyncCallbackManagerForLLMRun | None = None
        emitted = False
        try:
            fitted = await self._afit(item, params)
            (llm_run,) = await self._start_llm_run(run_manager, fitted.prompt, params)
            (deltas, first), attempts = await acall_with_retries(
                lambda: _aopen_stream(self._backend.astream(fitted.prompt, params)),
                **self._retry_settings(),
            )
            generation = None
            reports_tokens = _reports_tokens(run_manager)
            async for delta in _aprepend(first, deltas):
                if delta.text and reports_tokens:
                    await llm_run.on_llm_new_token(delta.text)
                text = delta.text if emitted else delta.text.lstrip()
                if text:
                    emitted = True
                    yield AIMessageChunk(content=text, id=message_id)
                generation = delta.generation or generation
            if generation is None:
                raise stream_cut_short(self._backend.name)
        except AlignerBackendError as error:
            if llm_run is not None:
                await llm_run.on_llm_error(error)
            yield self._stream_failure(item, error, start, emitted, message_id)
            return
        await llm_run.on_llm_end(self._llm_result(generation))
        last = self._stream_end(item, generation, start, attempts, fitted.truncated, emitted, message_id)
        if _accepted(last):
            await self._aremember(item, params, generation)
        yield last

    # -- shared steps ------------------------------------------------------------------------------------

    def _stream_end(
        self,
        item: Any,
        generation: Any,
        start: float,
        attempts: int,
        truncated: bool,
        emitted: bool,
        message_id: str | None,
    ) -> AIMessageChunk:
        """A stream's last chunk: the correction's metadata, or the failure if it is rejected."""
        try:
            final = self._corrected(
                item, generation, start, attempts=attempts, truncated=truncated, message_id=message_id
            )
        except AlignerCorrectionError as error:
            return self._stream_failure(item, error, start, emitted, message_id)
        return as_last_chunk(final, content="")

    def _params(self, overrides: dict[str, Any]) -> GenerationParams:
        if not overrides:
            return self.generation
        try:
            return GenerationParams.model_validate({**self.generation.model_dump(), **overrides})
        except ValidationError as error:
            raise AlignerInputError(f"invalid generation parameters {sorted(overrides)}: {error}") from error

    def _parse(self, value: Any) -> AlignerInput:
        return parse_input(
            value,
            question_key=self.question_key,
            answer_key=self.answer_key,
            default_question=self.default_question,
        )

    def _early_answer(self, item: AlignerInput) -> AIMessage | None:
        """The reply without a backend call or a cache: tool calls, no text question, ``skip_if``."""
        if item.has_tool_calls:
            assert item.message is not None
            return item.message
        if item.skipped is not None:
            return self._original(item, {"aligner_skipped": item.skipped})
        if self.skip_if is not None and self.skip_if(item.question, item.answer):
            return self._original(item, {"aligner_skipped": "skip_if"})
        return None

    # -- the cache: LangChain's (BaseCache) ------------------------------------------------------------------

    def _llm_cache(self) -> BaseCache | None:
        """The cache in use, resolved as LangChain resolves an LLM's ``cache``."""
        if isinstance(self.cache, BaseCache):
            return self.cache
        if self.cache is False:
            return None
        if self._sized_cache is not None:
            return self._sized_cache
        global_cache = get_llm_cache()
        if self.cache is True and global_cache is None:
            raise ValueError("cache=True asks for LangChain's global cache, but none is set (set_llm_cache)")
        return global_cache

    def _cache_key(self, item: AlignerInput, params: GenerationParams) -> tuple[str, str]:
        """The cache's (prompt, llm_string) for a correction: the prompt before truncation, and what else
        decides the correction (backend, server, model, generation parameters)."""
        prompt = self._template.format(item.question, item.answer, on_injection=self.on_injection)
        llm_string = json.dumps(
            {
                "aligner": self._backend.name,
                "url": self.url,
                "model": self.model,
                "generation": params.model_dump(mode="json"),
            },
            sort_keys=True,
        )
        return prompt, llm_string

    def _cached(self, item: AlignerInput, params: GenerationParams) -> AIMessage | None:
        """The cached correction, if there is one."""
        cache = self._llm_cache()
        return None if cache is None else self._from_cache(item, cache.lookup(*self._cache_key(item, params)))

    async def _acached(self, item: AlignerInput, params: GenerationParams) -> AIMessage | None:
        cache = self._llm_cache()
        if cache is None:
            return None
        return self._from_cache(item, await cache.alookup(*self._cache_key(item, params)))

    def _remember(self, item: AlignerInput, params: GenerationParams, generation: Generation) -> None:
        """Cache an accepted correction (rejected ones never are)."""
        cache = self._llm_cache()
        if cache is not None:
            cache.update(*self._cache_key(item, params), _to_cache(generation))

    async def _aremember(self, item: AlignerInput, params: GenerationParams, generation: Generation) -> None:
        cache = self._llm_cache()
        if cache is not None:
            await cache.aupdate(*self._cache_key(item, params), _to_cache(generation))

    def _from_cache(self, item: AlignerInput, value: Sequence[LCGeneration] | None) -> AIMessage | None:
        if not value:
            return None
        info = value[0].generation_info or {}
        generation = Generation(text=value[0].text, **{k: info.get(k) for k in _GENERATION_INFO})
        start = time.perf_counter()
        try:  # a copy of this runnable (model_copy), or another Aligner, may not share reject_degenerate
            return self._corrected(item, generation, start, attempts=0, truncated=False, cached=True)
        except AlignerCorrectionError as error:
            return self._fail(item, error, start)

    def _prompt_limit(self, params: GenerationParams) -> int | None:
        """The prompt token limit: ``max_input_tokens`` when set (the backend is not asked), else the
        backend's :meth:`~AlignerBackend.prompt_limit`, which leaves room for ``params.max_new_tokens``.

        Kept once known; asked again while unknown (the server may not have been reachable yet).
        """
        if self.max_input_tokens is not None:
            return self.max_input_tokens
        if params.max_new_tokens not in self._limits:
            limit = self._backend.prompt_limit(params.max_new_tokens)
            if limit is None:
                return None
            self._limits[params.max_new_tokens] = limit
        return self._limits[params.max_new_tokens]

    async def _afit(self, item: AlignerInput, params: GenerationParams) -> FittedPair:
        """:func:`fit_pair` without blocking the loop: the limit and token counts may be HTTP calls."""
        known = self.max_input_tokens is not None or params.max_new_tokens in self._limits
        limit = self._prompt_limit(params) if known else await asyncio.to_thread(self._prompt_limit, params)
        prompt = self._template.format(item.question, item.answer, on_injection=self.on_injection)
        if fits_without_counting(prompt, limit):
            return FittedPair(prompt, False)
        return await asyncio.to_thread(self._fit, item, limit)

    def _metadata(self, item: AlignerInput, start: float, **extra: Any) -> dict[str, Any]:
        return {
            "aligner_original_answer": item.answer,
            "aligner_backend": self._backend.name,
            "aligner_model": self._backend.model_name,
            "aligner_latency_ms": (time.perf_counter() - start) * 1000.0,
            **extra,
        }

    def _corrected(
        self,
        item: AlignerInput,
        generation: Generation,
        start: float,
        *,
        attempts: int,
        truncated: bool,
        cached: bool = False,
        message_id: str | None = None,
    ) -> AIMessage:
        """The answer replaced by ``generation``'s text: the one place a correction is accepted.

        Raises:
            AlignerCorrectionError: The text is empty, or degenerate with ``reject_degenerate``; every caller
                hands it to :meth:`_fail` or :meth:`_stream_failure`, so ``on_error`` decides.
        """
        problem = rejection(generation.text, reject_degenerate=self.reject_degenerate)
        if problem is not None:
            raise AlignerCorrectionError(problem, generation.text)
        usage = _usage(generation)
        metadata = self._metadata(
            item,
            start,
            aligner_corrected=True,
            aligner_attempts=attempts,
            aligner_truncated=truncated,
            aligner_cached=cached,
            finish_reason=generation.finish_reason,
            model_name=self._model_name(generation),
            token_usage={
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
            },
        )
        message_id = message_id or (item.message.id if item.message is not None else None)
        # Aligners write the correction after "ASSISTANT:" with a leading space (as trained): drop it.
        return AIMessage(
            content=generation.text.lstrip(), id=message_id, response_metadata=metadata, usage_metadata=usage
        )

    def _model_name(self, generation: Generation) -> str:
        return generation.model or self._backend.model_name

    def _llm_result(self, generation: Generation) -> LLMResult:
        """The Aligner's LLM run result: a chat generation whose message carries the token usage and the
        model's name, which is what LangChain's usage callback (``get_usage_metadata_callback``) counts."""
        model_name = self._model_name(generation)
        message = AIMessage(
            content=generation.text,
            usage_metadata=_usage(generation),
            response_metadata={"model_name": model_name, "finish_reason": generation.finish_reason},
        )
        token_usage = {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
        }
        info = {"finish_reason": generation.finish_reason} if generation.finish_reason else None
        return LLMResult(
            generations=[[ChatGeneration(message=message, generation_info=info)]],
            llm_output={"token_usage": token_usage, "model_name": model_name},
        )

    def _original(self, item: AlignerInput, extra: dict[str, Any], start: float | None = None) -> AIMessage:
        metadata = self._metadata(item, start or time.perf_counter(), aligner_corrected=False, **extra)
        if item.message is None:
            return AIMessage(content=item.answer, response_metadata=metadata)
        return item.message.model_copy(
            update={"response_metadata": {**item.message.response_metadata, **metadata}}
        )

    def _fail(self, item: AlignerInput, error: AlignerBackendError, start: float) -> AIMessage:
        if self.on_error == "raise":
            raise error
        logger.warning("Aligner call failed, returning the original answer: %s", error)
        return self._original(item, _failure(error), start)

    def _stream_failure(
        self,
        item: AlignerInput,
        error: AlignerBackendError,
        start: float,
        emitted: bool,
        message_id: str | None,
    ) -> AIMessageChunk:
        if self.on_error == "raise":
            raise error
        logger.warning(
            "Aligner stream failed, %s: %s", "ending it" if emitted else "returning the original", error
        )
        if not emitted:
            return as_last_chunk(self._fail(item, error, start))
        # A rejected correction was streamed whole; any other failure cut the stream short.
        ending = {} if isinstance(error, AlignerCorrectionError) else {"aligner_incomplete": True}
        metadata = self._metadata(item, start, aligner_corrected=False, **ending, **_failure(error))
        return AIMessageChunk(content="", id=message_id, response_metadata=metadata, chunk_position="last")

    def _parse_for(
        self, value: Any, run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun
    ) -> tuple[AlignerInput, str]:
        """The parsed input and the id of the reply: the upstream message's, else the one LangChain gives a
        run's output (``lc_run--<run id>``), the same for invoke and stream, corrected or not."""
        item = self._parse(value)
        message_id = f"lc_run--{run_manager.run_id}"
        if item.message is None:
            return replace(item, message=AIMessage(content=item.answer, id=message_id)), message_id
        if not item.message.id:
            return replace(item, message=item.message.model_copy(update={"id": message_id})), message_id
        return item, item.message.id

    def _start_llm_run(
        self,
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
        prompt: str,
        params: GenerationParams,
    ) -> Any:
        """Start the backend call's child run (an awaitable with an async run manager)."""
        serialized = {
            "lc": 1,
            "type": "not_implemented",
            "id": ["langchain_aligner", type(self._backend).__name__],
        }
        return run_manager.get_child().on_llm_start(
            serialized, [prompt], invocation_params=params.model_dump(), name=f"aligner-{self._backend.name}"
        )

    def _retry_settings(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "max_backoff": self.max_backoff,
            "what": f"the {self._backend.name} Aligner call",
        }

    def _fit(self, item: AlignerInput, limit: int | None) -> FittedPair:
        return fit_pair(
            self._template,
            item.question,
            item.answer,
            limit=limit,
            count_tokens=self._backend.count_tokens,
            on_injection=self.on_injection,
        )


_GENERATION_INFO = ("prompt_tokens", "completion_tokens", "finish_reason", "model")
"""What a cached correction keeps besides its text (as LangChain ``Generation.generation_info``)."""


def _to_cache(generation: Generation) -> list[LCGeneration]:
    """A correction as LangChain's caches store LLM results (which SQLite or Redis caches can serialize)."""
    info = {key: getattr(generation, key) for key in _GENERATION_INFO}
    return [LCGeneration(text=generation.text, generation_info=info)]


def _accepted(last: AIMessageChunk) -> bool:
    """Whether a stream's last chunk says the correction was accepted."""
    return last.response_metadata.get("aligner_corrected") is True


def _reports_tokens(run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun) -> bool:
    """Whether the Aligner's LLM run reports its tokens to callbacks: not inside a run tagged ``nostream``
    (inside ``ChatAligner``, whose own run streams the same text)."""
    return NOSTREAM_TAG not in run_manager.tags


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failure(error: AlignerBackendError) -> dict[str, Any]:
    """The metadata that says why the answer came back uncorrected."""
    if isinstance(error, AlignerCorrectionError):
        return {"aligner_error": _describe(error), "aligner_rejected": error.problem}
    return {"aligner_error": _describe(error)}


def _usage(generation: Generation) -> UsageMetadata | None:
    """LangChain's usage record, when the backend told both counts (TGI's ``/generate`` omits the input's)."""
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    if prompt is None or completion is None:
        return None
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def _added_up(inputs: Iterator[Any]) -> Any:
    """Add up streamed input pieces the way LangChain does (``+``, else the last piece wins)."""
    total: Any = None
    for piece in inputs:
        total = _add(total, piece)
    return total


async def _aadded_up(inputs: AsyncIterator[Any]) -> Any:
    total: Any = None
    async for piece in inputs:
        total = _add(total, piece)
    return total


def _add(total: Any, piece: Any) -> Any:
    if total is None:
        return piece
    try:
        return total + piece
    except TypeError:
        return piece


def _open_stream(
    deltas: Iterator[GenerationDelta],
) -> tuple[Iterator[GenerationDelta], GenerationDelta | None]:
    """Start a stream: return it with its first piece (``None`` when it is empty)."""
    return deltas, next(deltas, None)


async def _aopen_stream(
    deltas: AsyncIterator[GenerationDelta],
) -> tuple[AsyncIterator[GenerationDelta], GenerationDelta | None]:
    return deltas, await anext(deltas, None)


def _prepend(first: GenerationDelta | None, rest: Iterator[GenerationDelta]) -> Iterator[GenerationDelta]:
    if first is not None:
        yield first
    yield from rest


async def _aprepend(
    first: GenerationDelta | None, rest: AsyncIterator[GenerationDelta]
) -> AsyncIterator[GenerationDelta]:
    if first is not None:
        yield first
    async for delta in rest:
        yield delta
