"""The correction policy, in one place for ``wrap``, ``ChatAligner``, ``AlignerMiddleware``, the evaluation
runner and ``langchain_aligner_train.preference``.

What is corrected: an AI message with text and no tool calls (:func:`is_correctable`; with ``correct="all"``
the middleware corrects the text beside tool calls too, and keeps the calls).

Against which question: the last human turn of the conversation (:func:`correction_input`); without one
(or with one that has no text, an image) the answer passes through uncorrected, marked
``aligner_skipped="no_question"``. A (question, answer) pair is given to an Aligner under its own keys
(:func:`pair_input`).

When a correction counts: an empty one never does, a degenerate one not while ``reject_degenerate``
(:func:`rejection`); ``on_error`` then applies as to a backend failure. What happened to an answer is read
back from the message's ``aligner_*`` metadata by :class:`CorrectionOutcome`.

Replacing: a correction replaces an answer's content only (:func:`apply_correction`); the rest, token usage
included, stays the answering model's, and the Aligner's own usage is reported by its own run, so that
LangChain's usage callback counts each model once, under its own name.

Streaming: an answer is corrected before anyone may see it, so the model that writes it is called without
token streaming (LangChain's ``disable_streaming``) and its run is tagged ``nostream`` (LangGraph's
``TAG_NOSTREAM``): neither ``stream_mode="messages"`` nor ``astream_events``' ``on_chat_model_stream``
events carry the uncorrected text.

Tracing: the calls inside a correction are child runs of the correcting run (:func:`inner_config`); an
Aligner called inside a run tagged ``nostream`` reports no tokens to callbacks, since the correcting run
(``ChatAligner``) streams the same text as its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, patch_config
from typing_extensions import TypeIs

from langchain_aligner.quality import CorrectionProblem, correction_problem

if TYPE_CHECKING:
    from langchain_aligner.runnable import AlignerRunnable

__all__ = [
    "NOSTREAM_TAG",
    "CorrectionOutcome",
    "apply_correction",
    "correct_chunk",
    "correction_input",
    "inner_config",
    "is_correctable",
    "last_human",
    "pair_input",
    "rejection",
    "without_token_streaming",
]

NOSTREAM_TAG = "nostream"
"""LangGraph's tag (``langgraph.constants.TAG_NOSTREAM``) for runs kept out of ``stream_mode="messages"``."""

R = TypeVar("R", bound=Runnable[Any, Any])


def without_token_streaming(model: R) -> R:
    """``model`` (a chat model, or a binding of one such as ``bind_tools``' result) with token streaming off.

    A copy with ``disable_streaming=True``: ``invoke`` then never streams, even when ``astream_events`` or a
    streaming callback asks for tokens. Other runnables are returned as they are.
    """
    if isinstance(model, BaseChatModel):
        if model.disable_streaming is True:
            return model
        return model.model_copy(update={"disable_streaming": True})  # type: ignore[return-value]
    if isinstance(model, RunnableBinding):
        return model.model_copy(update={"bound": without_token_streaming(model.bound)})  # type: ignore[return-value]
    return model


def inner_config(
    config: RunnableConfig | None = None, callbacks: BaseCallbackManager | None = None
) -> RunnableConfig:
    """The config of a call inside a correction: ``config`` (default: the current one) with ``callbacks``
    (the child callbacks of the correcting run) and the ``nostream`` tag, so that the call is traced under
    the correcting run but its output never reaches a messages stream as it comes."""
    base = ensure_config(config)
    child = patch_config(base, callbacks=callbacks) if callbacks is not None else base
    return {**child, "tags": [*child.get("tags", []), NOSTREAM_TAG]}


def is_correctable(message: BaseMessage, *, with_tool_calls: bool = False) -> TypeIs[AIMessage]:
    """Whether an Aligner corrects ``message``: an AI message with text, and without tool calls unless
    ``with_tool_calls`` (its text is then corrected and its calls kept as they are)."""
    return (
        isinstance(message, AIMessage)
        and bool(message.text.strip())
        and (with_tool_calls or not message.tool_calls)
    )


def last_human(messages: Sequence[BaseMessage]) -> HumanMessage | None:
    """The last human message: the question an answer is corrected against; ``None`` when there is none."""
    return next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)


def correction_input(conversation: LanguageModelInput, answer: AIMessage) -> list[BaseMessage]:
    """The Aligner's input for ``answer`` to ``conversation`` (a ``str`` question, messages or a
    ``PromptValue``): the conversation's last human turn and the answer, or the answer alone when there is
    no human turn (the Aligner then passes it through, marked ``no_question``)."""
    if isinstance(conversation, str):
        messages: list[BaseMessage] = [HumanMessage(conversation)]
    elif isinstance(conversation, PromptValue):
        messages = conversation.to_messages()
    else:
        messages = convert_to_messages(conversation)
    human = last_human(messages)
    return [answer] if human is None else [human, answer]


def pair_input(aligner: AlignerRunnable, question: str, answer: str) -> dict[str, str]:
    """``aligner``'s input for a (question, answer) pair: a dict under its question and answer keys."""
    return {aligner.question_key: question, aligner.answer_key: answer}


def rejection(text: str, *, reject_degenerate: bool) -> CorrectionProblem | None:
    """Why a correction is refused: ``"empty"`` always, ``"degenerate"`` with ``reject_degenerate``
    (:func:`langchain_aligner.quality.correction_problem`); ``None`` when it is usable."""
    problem = correction_problem(text)
    return problem if problem == "empty" or (problem and reject_degenerate) else None


@dataclass(frozen=True)
class CorrectionOutcome:
    """What an Aligner did with an answer, read from its output's ``aligner_*`` metadata.

    ``corrected``: the correction replaced the answer. Otherwise ``error`` says why the correction failed
    (a backend error, a rejected correction) or ``skipped`` why none was tried (``skip_if``, ``no_question``).
    """

    original: str
    corrected: bool
    error: str | None = None
    skipped: str | None = None

    @classmethod
    def of(cls, message: BaseMessage) -> CorrectionOutcome:
        """Read an Aligner's output (``AlignerRunnable``, ``wrap``, the middleware, ``ChatAligner``).

        Raises:
            ValueError: ``message`` has no Aligner metadata (``aligner_original_answer``).
        """
        metadata = message.response_metadata
        if "aligner_original_answer" not in metadata:
            raise ValueError("not an Aligner's output: no 'aligner_original_answer' in response_metadata")
        return cls(
            original=metadata["aligner_original_answer"],
            corrected=bool(metadata.get("aligner_corrected")),
            error=metadata.get("aligner_error"),
            skipped=metadata.get("aligner_skipped"),
        )


def apply_correction(answer: AIMessage, correction: AIMessage) -> AIMessage:
    """``answer`` with the correction's content and the Aligner's ``aligner_*`` metadata.

    Everything else stays the answer's: id, name, tool calls, ``additional_kwargs``, ``response_metadata``
    (``model_name``, ``finish_reason``: they describe the model that answered) and ``usage_metadata`` (its
    tokens, under its model's name). The Aligner's token usage is ``response_metadata["aligner_usage"]``
    when it corrected. When it failed open, ``correction`` is the answer itself, with the ``aligner_*`` keys
    that say why.
    """
    return answer.model_copy(
        update={"content": correction.content, "response_metadata": _merged_metadata(answer, correction)}
    )


def correct_chunk(answer: AIMessage, piece: AIMessageChunk) -> AIMessageChunk:
    """A piece of a streamed correction as a chunk of ``answer``: the last piece carries what
    :func:`apply_correction` keeps of the answer, so that the chunks add up to the corrected message."""
    if piece.chunk_position != "last":
        return piece
    return piece.model_copy(
        update={
            "additional_kwargs": {**answer.additional_kwargs, **piece.additional_kwargs},
            "response_metadata": _merged_metadata(answer, piece),
            "usage_metadata": answer.usage_metadata,
        }
    )


def _merged_metadata(answer: AIMessage, correction: AIMessage) -> dict[str, Any]:
    aligner = {
        key: value for key, value in correction.response_metadata.items() if key.startswith("aligner_")
    }
    if aligner.get("aligner_corrected") and correction.usage_metadata is not None:
        aligner["aligner_usage"] = correction.usage_metadata
    return {**answer.response_metadata, **aligner}
