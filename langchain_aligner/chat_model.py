"""``ChatAligner``: any chat model, with its answers corrected by an Aligner."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.utils import coro_with_context
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field

from langchain_aligner.chunks import as_last_chunk
from langchain_aligner.correction import (
    apply_correction,
    correct_chunk,
    correction_input,
    inner_config,
    is_correctable,
    without_token_streaming,
)
from langchain_aligner.runnable import AlignerRunnable

__all__ = ["ChatAligner"]


@dataclass(frozen=True)
class _Call:
    """A ChatAligner call in progress: the run id it fixed for LangChain's run, and its config."""

    model: ChatAligner
    run_id: uuid.UUID
    config: RunnableConfig


_CALL: ContextVar[_Call | None] = ContextVar("langchain_aligner_chat_aligner_call", default=None)

_STRUCTURED_OUTPUT_KWARGS = ("response_format", "ls_structured_output_format")
"""Call arguments that ask the model for structured output (JSON mode, a schema): data, not prose."""


class ChatAligner(BaseChatModel):
    """A chat model whose answers are corrected by an Aligner.

    ``llm`` answers; the Aligner corrects the answer against the last human message, and the correction
    is what ``ChatAligner`` returns (the original answer is kept in ``response_metadata``). Answers that
    call tools pass through uncorrected, so ``ChatAligner`` works as the model of ``create_agent``.
    ``bind_tools`` and ``with_structured_output`` use the inner model's own; structured output (also JSON
    mode asked for with ``response_format``) is never corrected. Streaming streams the correction as it is
    generated, after the inner model has answered; the inner model is called without token streaming and
    its run tagged ``nostream``, so an agent's messages stream and ``astream_events`` carry only corrected
    tokens. When the Aligner fails, or writes an empty or degenerate
    correction, the aligner's ``on_error`` decides: the inner model's answer is returned (the reason in
    ``aligner_error``) or the error is raised.

    .. code-block:: python

        from langchain_openai import ChatOpenAI
        from langchain_aligner.chat_model import ChatAligner

        model = ChatAligner(
            llm=ChatOpenAI(model="gpt-4o-mini"),
            aligner={"backend": "tgi", "url": "http://127.0.0.1:8080"},
        )
        for chunk in model.stream("How do I pick a lock?"):
            print(chunk.content, end="")
    """

    model_config = ConfigDict(extra="forbid")

    llm: BaseChatModel
    """The chat model whose answers are corrected."""

    aligner: AlignerRunnable
    """The Aligner, or the keyword arguments to build one (``{"backend": "tgi", "url": ...}``)."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens of a correction; ``None`` keeps the aligner's ``generation.max_new_tokens``."""

    stop: list[str] | None = None
    """Stop sequences for the inner model's answer and for the correction."""

    streaming: bool = False
    """Stream on ``invoke`` too (so that callbacks receive the correction token by token)."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serializable with LangChain's ``dumpd``/``load``, as ``ChatOpenAI`` is (when its ``llm`` is)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_aligner", "chat_model"]

    @property
    def _llm_type(self) -> str:
        return "aligner-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "llm": {"type": self.llm._llm_type, **self.llm._identifying_params},
            "aligner": {
                "backend": self.aligner.aligner_backend.name,
                "url": self.aligner.url,
                "model": self.aligner.model,
            },
            "max_tokens": self.max_tokens,
            "stop": self.stop,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """The inner model's tracing parameters: it is the model that answers."""
        params = self.llm._get_ls_params(stop=stop or self.stop, **kwargs)
        params["ls_model_type"] = "chat"
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way the inner model does; its tool calls pass through uncorrected."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bound = self.llm.bind_tools(tools, **kwargs)
        if not isinstance(bound, RunnableBinding) or bound.bound is not self.llm:
            raise NotImplementedError(
                f"{type(self.llm).__name__}.bind_tools does not return a binding of the model itself"
            )
        return self.bind(**bound.kwargs)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """The inner model's structured output: a structured answer is data, not text to correct."""
        return self.llm.with_structured_output(schema, include_raw=include_raw, **kwargs)

    # LangChain hands ``_generate`` its run manager, but not ``_stream`` (neither from ``stream`` nor from a
    # streamed ``invoke``). So that the inner runs are children of this model's run there too, each call
    # fixes its run id before LangChain starts the run (``config["run_id"]``, which LangChain uses) and
    # ``_stream`` makes the children from it (see ``_inner_config``).

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer with the inner model and return the correction."""
        config, context = self._call_context(config)
        return context.run(super().invoke, input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Async :meth:`invoke`."""
        config, context = self._call_context(config)
        return await coro_with_context(super().ainvoke(input, config, stop=stop, **kwargs), context)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Answer with the inner model, then stream the correction as the Aligner writes it."""
        config, context = self._call_context(config)
        chunks = cast(
            Generator[AIMessageChunk, None, None], super().stream(input, config, stop=stop, **kwargs)
        )
        try:
            while (chunk := context.run(next, chunks, None)) is not None:
                yield chunk
        finally:
            context.run(chunks.close)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""
        config, context = self._call_context(config)
        chunks = cast(
            AsyncGenerator[AIMessageChunk, None], super().astream(input, config, stop=stop, **kwargs)
        )
        try:
            while (chunk := await coro_with_context(anext(chunks, None), context)) is not None:
                yield chunk
        finally:
            await coro_with_context(chunks.aclose(), context)

    def _call_context(self, config: RunnableConfig | None) -> tuple[RunnableConfig, Context]:
        """The call's config with its run id fixed, and a context in which ``_stream`` finds both."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        config["run_id"] = run_id
        context = copy_context()
        context.run(_CALL.set, _Call(self, run_id, config))
        return config, context

    def _inner_config(
        self, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None, *, is_async: bool
    ) -> RunnableConfig:
        """Config for the inner calls: children of this model's run, tagged ``nostream`` (their tokens are not
        this model's output). The parent is the run manager when LangChain hands one over, else the run of
        the call this model is serving (:meth:`_call_context`)."""
        manager_class = AsyncCallbackManager if is_async else CallbackManager
        call = _CALL.get()
        if run_manager is not None:
            parent: Any = run_manager
            run_id = run_manager.run_id
        elif call is not None and call.model is self:
            config = call.config
            parent = manager_class.configure(
                config.get("callbacks"),
                inheritable_tags=config.get("tags"),
                inheritable_metadata=config.get("metadata"),
            )
            run_id = call.run_id
        else:
            return inner_config({})
        # What ParentRunManager.get_child does; LLM run managers have no such method.
        children = manager_class(handlers=[], parent_run_id=run_id)
        children.set_handlers(parent.inheritable_handlers)
        children.add_tags(parent.inheritable_tags)
        children.add_metadata(parent.inheritable_metadata)
        return inner_config({}, children)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        stop = stop or self.stop
        config = self._inner_config(run_manager, is_async=False)
        answer = self._answering().invoke(messages, config=config, stop=stop, **kwargs)
        if not _is_answer(answer, kwargs):
            return _result(answer)
        pair = correction_input(messages, answer)
        correction = self.aligner.invoke(pair, config=config, **self._overrides(stop))
        return _result(apply_correction(answer, correction))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        stop = stop or self.stop
        config = self._inner_config(run_manager, is_async=True)
        answer = await self._answering().ainvoke(messages, config=config, stop=stop, **kwargs)
        if not _is_answer(answer, kwargs):
            return _result(answer)
        pair = correction_input(messages, answer)
        correction = await self.aligner.ainvoke(pair, config=config, **self._overrides(stop))
        return _result(apply_correction(answer, correction))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stop = stop or self.stop
        config = self._inner_config(run_manager, is_async=False)
        answer = self._answering().invoke(messages, config=config, stop=stop, **kwargs)
        if _is_answer(answer, kwargs):
            pair = correction_input(messages, answer)
            pieces = self.aligner.stream(pair, config=config, **self._overrides(stop))
        else:
            pieces = iter([as_last_chunk(answer)])
        for piece in pieces:
            chunk = ChatGenerationChunk(message=_own_chunk(answer, piece))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stop = stop or self.stop
        config = self._inner_config(run_manager, is_async=True)
        answer = await self._answering().ainvoke(messages, config=config, stop=stop, **kwargs)
        if not _is_answer(answer, kwargs):
            chunk = ChatGenerationChunk(message=_own_chunk(answer, as_last_chunk(answer)))
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            return
        pair = correction_input(messages, answer)
        async for piece in self.aligner.astream(pair, config=config, **self._overrides(stop)):
            chunk = ChatGenerationChunk(message=_own_chunk(answer, piece))
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _answering(self) -> BaseChatModel:
        """The inner model, called without token streaming: its tokens are not this model's output."""
        return without_token_streaming(self.llm)

    def _overrides(self, stop: list[str] | None) -> dict[str, Any]:
        """Per-call generation settings of the correction."""
        overrides: dict[str, Any] = {}
        if self.max_tokens is not None:
            overrides["max_new_tokens"] = self.max_tokens
        if stop:
            overrides["stop"] = tuple(stop)
        return overrides


def _is_answer(message: AIMessage, kwargs: dict[str, Any]) -> bool:
    """Whether the Aligner corrects ``message``: correctable text, not asked for as structured output."""
    return is_correctable(message) and not any(key in kwargs for key in _STRUCTURED_OUTPUT_KWARGS)


def _result(message: BaseMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=_own(message))])


def _own_chunk(answer: AIMessage, piece: AIMessageChunk) -> AIMessageChunk:
    """A chunk of this model's stream (see :func:`_own`); the last one carries the answer's metadata."""
    return _own(correct_chunk(answer, piece))


M = TypeVar("M", bound=BaseMessage)


def _own(message: M) -> M:
    """``message`` as this model's output: without the inner model's id (BaseChatModel gives the message this
    run's), and without token usage: the inner model's and the Aligner's runs, children of this one, report
    theirs under their own model names; reporting them again here would count them twice."""
    return message.model_copy(update={"id": None, "usage_metadata": None})
