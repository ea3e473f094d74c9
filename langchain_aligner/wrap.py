"""A chat model followed by an Aligner, keeping the question: ``aligner.wrap(llm)`` / ``with_aligner``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict

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

__all__ = ["AlignedChatModel", "with_aligner"]


def with_aligner(
    chat_model: Runnable[LanguageModelInput, BaseMessage], aligner: AlignerRunnable
) -> AlignedChatModel:
    """Return ``chat_model`` whose answers ``aligner`` corrects (same as ``aligner.wrap(chat_model)``)."""
    return AlignedChatModel(chat_model=chat_model, aligner=aligner)


class AlignedChatModel(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Calls a chat model, then corrects its answer against the last human message of the input.

    Takes what the chat model takes (a ``str``, messages, a ``PromptValue``) and returns an ``AIMessage``,
    so it replaces the model anywhere in a chain: ``prompt | aligner.wrap(llm) | StrOutputParser()``.
    AI messages that call tools pass through unchanged, and so do answers to an input without a text
    question (no human message, an image-only one), marked ``aligner_skipped="no_question"``. Streaming
    streams the correction (the model's answer is needed whole before the Aligner can start); the model is
    called without token streaming and its run tagged ``nostream``, so an agent's messages stream and
    ``astream_events`` never carry its uncorrected tokens. A failed,
    empty or degenerate correction follows the aligner's ``on_error``: the model's answer comes back, or the
    error is raised. Methods the wrapper lacks are forwarded to the model, and results that are chat models
    again (``bind_tools(...)``) come back wrapped.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model: Runnable[LanguageModelInput, BaseMessage]
    aligner: AlignerRunnable

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serializable with LangChain's ``dumpd``/``load`` when the chat model is (as ``ChatOpenAI`` is)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_aligner", "wrap"]

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return self.chat_model.InputType

    @property
    def OutputType(self) -> type[BaseMessage]:  # noqa: N802
        return BaseMessage

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Answer with the model, then correct; ``kwargs`` go to the model."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Async :meth:`invoke`."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        """Answer with the model, then stream the correction."""
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        """Async :meth:`stream`."""

        async def one() -> AsyncIterator[LanguageModelInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    def _invoke(
        self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Any:
        answer = self._answer(input, run_manager, config, **kwargs)
        if not is_correctable(answer):
            return answer
        correction = self.aligner.invoke(
            correction_input(input, answer), _child(config, run_manager, "aligner")
        )
        return apply_correction(answer, correction)

    async def _ainvoke(
        self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Any:
        answer = await self._aanswer(input, run_manager, config, **kwargs)
        if not is_correctable(answer):
            return answer
        correction = await self.aligner.ainvoke(
            correction_input(input, answer), _child(config, run_manager, "aligner")
        )
        return apply_correction(answer, correction)

    def _stream(
        self, inputs: Iterator[LanguageModelInput], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        (input,) = inputs
        answer = self._answer(input, run_manager, config, **kwargs)
        if not is_correctable(answer):
            yield _as_chunk(answer)
            return
        for piece in self.aligner.stream(
            correction_input(input, answer), _child(config, run_manager, "aligner")
        ):
            yield correct_chunk(answer, piece)

    async def _astream(
        self,
        inputs: AsyncIterator[LanguageModelInput],
        run_manager: Any,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        input = [item async for item in inputs][0]
        answer = await self._aanswer(input, run_manager, config, **kwargs)
        if not is_correctable(answer):
            yield _as_chunk(answer)
            return
        pair = correction_input(input, answer)
        async for piece in self.aligner.astream(pair, _child(config, run_manager, "aligner")):
            yield correct_chunk(answer, piece)

    def _answer(
        self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> BaseMessage:
        """The model's answer, not streamed (see :mod:`langchain_aligner.correction`)."""
        model = without_token_streaming(self.chat_model)
        return model.invoke(input, inner_config(config, run_manager.get_child("model")), **kwargs)

    async def _aanswer(
        self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> BaseMessage:
        model = without_token_streaming(self.chat_model)
        return await model.ainvoke(input, inner_config(config, run_manager.get_child("model")), **kwargs)

    def with_structured_output(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: the Aligner corrects free text, and structured output would bypass it."""
        raise NotImplementedError(
            "an Aligner corrects free-text answers; call with_structured_output on the unwrapped model, "
            "or parse the corrected text: aligner.wrap(llm) | parser"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return super().__getattr__(name)  # type: ignore[misc]
        chat_model = self.__dict__.get("chat_model")
        if chat_model is None:
            raise AttributeError(name)
        attribute = getattr(chat_model, name)
        if not callable(attribute):
            return attribute

        def forwarded(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return with_aligner(result, self.aligner) if _is_chat_model(result) else result

        return forwarded


def _as_chunk(message: BaseMessage) -> Any:
    return as_last_chunk(message) if isinstance(message, AIMessage) else message


def _child(config: RunnableConfig, run_manager: Any, tag: str) -> RunnableConfig:
    return patch_config(config, callbacks=run_manager.get_child(tag))


def _is_chat_model(value: Any) -> bool:
    while isinstance(value, RunnableBinding):
        value = value.bound
    return isinstance(value, BaseChatModel)
