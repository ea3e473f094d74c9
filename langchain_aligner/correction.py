"""The correction policy, in one place for ``wrap``, ``ChatAligner``, ``AlignerMiddleware``, the evaluation
runner and ``train.preference``.

Streaming: an answer is corrected before anyone may see it, so the model that writes it is called without
token streaming (LangChain's ``disable_streaming``) and its run is tagged ``nostream`` (LangGraph's
``TAG_NOSTREAM``): neither ``stream_mode="messages"`` nor ``astream_events``' ``on_chat_model_stream``
events carry the uncorrected text.

Replacing: a correction replaces an answer's content only (:func:`apply_correction`); the rest, token usage
included, stays the answering model's, and the Aligner's own usage is reported by its own run, so that
LangChain's usage callback counts each model once, under its own name.

Tracing: the calls inside a correction are child runs of the correcting run
(:func:`inner_config`); an Aligner called inside a run tagged ``nostream`` reports no tokens to callbacks,
since the correcting run (``ChatAligner``) streams the same text as its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, patch_config

if TYPE_CHECKING:
    from langchain_aligner.runnable import AlignerRunnable

__all__ = [
    "NOSTREAM_TAG",
    "apply_correction",
    "correct_chunk",
    "inner_config",
    "pair_input",
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


def inner_config(config: RunnableConfig | None = None, callbacks: Callbacks = None) -> RunnableConfig:
    """The config of a call inside a correction: ``config`` (default: the current one) with ``callbacks``
    (the child callbacks of the correcting run) and the ``nostream`` tag, so that the call is traced under
    the correcting run but its output never reaches a messages stream as it comes."""
    base = ensure_config(config)
    child = patch_config(base, callbacks=callbacks) if callbacks is not None else base
    return {**child, "tags": [*child.get("tags", []), NOSTREAM_TAG]}


def pair_input(aligner: AlignerRunnable, question: str, answer: str) -> dict[str, str]:
    """``aligner``'s input for a (question, answer) pair: a dict under its question and answer keys."""
    return {aligner.question_key: question, aligner.answer_key: answer}


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
