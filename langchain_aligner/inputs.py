"""Reading the question and the answer to correct out of the input shapes the Aligner accepts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue

from langchain_aligner.correction import last_human
from langchain_aligner.errors import AlignerInputError

__all__ = ["NO_QUESTION", "AlignerInput", "parse_input"]

NO_QUESTION = "no_question"
"""``AlignerInput.skipped`` when there is no text question: no human turn, or one without text (an image)."""

_SHAPES = (
    "a {'question': ..., 'answer': ...} dict, a str answer, an AIMessage, a list of messages or a PromptValue"
)


@dataclass(frozen=True)
class AlignerInput:
    """A question, the answer to correct, and the upstream AI message when there was one.

    ``skipped`` says why the answer passes through uncorrected (:data:`NO_QUESTION`), else ``None``.
    """

    question: str
    answer: str
    message: AIMessage | None = None
    skipped: str | None = None

    @property
    def has_tool_calls(self) -> bool:
        """True when the upstream message calls tools: such messages are not corrected."""
        return bool(self.message is not None and self.message.tool_calls)


def parse_input(
    value: Any,
    *,
    question_key: str = "question",
    answer_key: str = "answer",
    default_question: str | None = None,
) -> AlignerInput:
    """Extract question and answer from any accepted input shape.

    * ``dict``: ``value[question_key]`` and ``value[answer_key]`` (str or message); other keys are ignored.
    * ``str`` or ``AIMessage``: the answer; the question is ``default_question``.
    * a list of messages (or tuples/dicts convertible to messages) or a ``PromptValue``: the answer is the
      last AI turn, the question the text of the last human turn before it (else ``default_question``;
      see :mod:`langchain_aligner.correction`).

    A question without text (no human turn in a message list, an image-only human turn, an empty text)
    is no error: the input is marked ``skipped=NO_QUESTION``, and the answer passes through uncorrected.

    Raises:
        AlignerInputError: wrong type, a bare answer without ``default_question``, or an empty answer.
    """
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, Mapping):
        parsed = _from_mapping(value, question_key, answer_key, default_question)
    elif isinstance(value, str) or isinstance(value, AIMessage):
        message = value if isinstance(value, AIMessage) else None
        parsed = AlignerInput(_need_question(default_question, value), _text(value, "answer"), message)
    elif isinstance(value, Sequence):
        parsed = _from_messages(_to_messages(value), default_question)
    else:
        raise AlignerInputError(f"cannot correct a {type(value).__name__}; expected {_SHAPES}")
    if not parsed.answer.strip() and not parsed.has_tool_calls:
        raise AlignerInputError("the answer to correct is empty")
    if not parsed.question.strip():
        return replace(parsed, question="", skipped=NO_QUESTION)
    return parsed


def _from_mapping(
    value: Mapping[str, Any], question_key: str, answer_key: str, default_question: str | None
) -> AlignerInput:
    if answer_key not in value:
        raise AlignerInputError(f"the input dict has no {answer_key!r} key (keys: {sorted(map(str, value))})")
    answer = value[answer_key]
    question = value.get(question_key, default_question)
    if question is None:
        raise AlignerInputError(
            f"the input dict has no {question_key!r} key (keys: {sorted(map(str, value))}); "
            "set question_key or default_question"
        )
    message = answer if isinstance(answer, AIMessage) else None
    return AlignerInput(_text(question, "question"), _text(answer, "answer"), message)


def _from_messages(messages: list[BaseMessage], default_question: str | None) -> AlignerInput:
    index = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], AIMessage)), None)
    if index is None:
        raise AlignerInputError("the message list has no AI message to correct")
    answer = messages[index]
    assert isinstance(answer, AIMessage)
    human = last_human(messages[:index])
    question = human.text if human is not None and human.text.strip() else default_question
    return AlignerInput(question or "", answer.text, answer)


def _to_messages(value: Sequence[Any]) -> list[BaseMessage]:
    try:
        return convert_to_messages(value)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise AlignerInputError(f"cannot read the list as messages ({error}); expected {_SHAPES}") from error


def _need_question(question: str | None, answer: Any) -> str:
    if question is None:
        raise AlignerInputError(
            f"a bare {type(answer).__name__} carries no question; pass {{'question': ..., 'answer': ...}}, "
            "a message list with the human turn, or set default_question"
        )
    return question


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return value.text
    raise AlignerInputError(f"the {what} must be a str or a message, not {type(value).__name__}")
