"""Agent middleware that corrects a LangChain v1 agent's answers with an Aligner.

.. code-block:: python

    from langchain.agents import create_agent
    from langchain_aligner.middleware import AlignerMiddleware

    agent = create_agent(
        model,
        tools=[get_weather],
        middleware=[AlignerMiddleware({"backend": "tgi", "url": "http://127.0.0.1:8080"})],
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import set_config_context
from langchain_core.runnables.utils import coro_with_context

from langchain_aligner.correction import (
    NOSTREAM_TAG,
    apply_correction,
    correction_input,
    inner_config,
    is_correctable,
    without_token_streaming,
)
from langchain_aligner.runnable import AlignerRunnable

__all__ = ["AlignerMiddleware"]


class AlignerMiddleware(AgentMiddleware):
    """Corrects the answers of a ``create_agent`` agent with an Aligner before they enter the state.

    The model's answer (an AI message without tool calls) is corrected against the user's question, the
    last human message before it; without one (or with an image-only one) the answer stays as it is, marked
    ``aligner_skipped="no_question"``. Tool-call turns and structured-response turns pass through untouched.
    The corrected message keeps the original's id, so it takes the original's place: the agent's state
    never holds both. The original answer stays in the corrected message's ``response_metadata``.

    Streaming: with this middleware, ``stream_mode="messages"`` carries each model turn as one whole
    message, the corrected one for answers, never the upstream model's or the Aligner's raw tokens:
    streaming the uncorrected answer would show users the very text the Aligner exists to fix. The model
    is called with token streaming off, so ``astream_events`` has no ``on_chat_model_stream`` events of
    it either; the corrected turn is the model node's output.

    Args:
        aligner: An :class:`~langchain_aligner.AlignerRunnable`, or the keyword arguments to build one
            (``{"backend": "tgi", "url": ...}``).
        correct: ``"final"`` (default) corrects answers only; ``"all"`` corrects the text of every AI
            message, including the text that accompanies tool calls (the tool calls stay as they are).
        on_error: ``"return_original"`` keeps the uncorrected message when the Aligner fails (marked in
            its metadata), ``"raise"`` fails the agent run; ``None`` keeps the aligner's own setting. An
            empty or degenerate correction is a failure too (see ``AlignerRunnable.reject_degenerate``).
    """

    def __init__(
        self,
        aligner: AlignerRunnable | Mapping[str, Any],
        *,
        correct: Literal["final", "all"] = "final",
        on_error: Literal["return_original", "raise"] | None = None,
    ) -> None:
        super().__init__()
        if correct not in ("final", "all"):
            raise ValueError(f"correct must be 'final' or 'all', got {correct!r}")
        if isinstance(aligner, Mapping):
            aligner = AlignerRunnable(**({**aligner, "on_error": on_error} if on_error else aligner))
        elif not isinstance(aligner, AlignerRunnable):
            raise TypeError(f"aligner must be an AlignerRunnable or a dict of its arguments, got {aligner!r}")
        elif on_error is not None and on_error != aligner.on_error:
            aligner = aligner.model_copy(update={"on_error": on_error})
        self.aligner = aligner
        self.correct = correct

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse:
        """Call the model (not streamed), then correct its answer."""
        with set_config_context(inner_config()) as context:
            response = context.run(handler, _quiet(request))
        jobs = self._jobs(request, response)
        corrections = {i: self.aligner.invoke(job, config=_ALIGNER_CONFIG) for i, job in jobs.items()}
        return _corrected(response, corrections)

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        """Async :meth:`wrap_model_call`."""
        with set_config_context(inner_config()) as context:
            response = await coro_with_context(handler(_quiet(request)), context)
        jobs = self._jobs(request, response)
        corrections = {i: await self.aligner.ainvoke(job, config=_ALIGNER_CONFIG) for i, job in jobs.items()}
        return _corrected(response, corrections)

    def _jobs(self, request: ModelRequest, response: ModelResponse) -> dict[int, list[BaseMessage]]:
        """The Aligner inputs for the messages of ``response`` to correct, by index; none in a structured
        response. Tool calls are left out of the input: they are kept as they are."""
        if response.structured_response is not None:
            return {}
        jobs: dict[int, list[BaseMessage]] = {}
        for index, message in enumerate(response.result):
            if is_correctable(message, with_tool_calls=self.correct == "all"):
                answer = AIMessage(content=message.content, id=message.id)
                jobs[index] = correction_input(request.messages, answer)
        return jobs


def _corrected(response: ModelResponse, corrections: dict[int, AIMessage]) -> ModelResponse:
    if not corrections:
        return response
    result = [
        apply_correction(message, corrections[i]) if i in corrections else message  # type: ignore[arg-type]
        for i, message in enumerate(response.result)
    ]
    return ModelResponse(result=result, structured_response=response.structured_response)


def _quiet(request: ModelRequest) -> ModelRequest:
    """The request with the model's token streaming off: its answer is corrected before anyone sees it."""
    return request.override(model=without_token_streaming(request.model))


_ALIGNER_CONFIG: RunnableConfig = {"tags": [NOSTREAM_TAG], "run_name": "AlignerMiddleware"}
"""The Aligner's own run: traced, but kept out of ``stream_mode="messages"``."""
