"""The correction policy (langchain_aligner.correction): what is corrected, against which question, under
which keys, and which corrections are rejected."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue

from langchain_aligner import AlignerRunnable
from langchain_aligner.correction import correction_input, is_correctable, pair_input, rejection
from tests.helpers.correction import ANSWER, CORRECTED, MESSAGES, QUESTION

CORRECTED_WITH_TOOL_CALLS = {"text", "text beside a tool call"}


@pytest.mark.parametrize("kind", MESSAGES)
def test_what_is_correctable(kind: str) -> None:
    assert is_correctable(MESSAGES[kind]) is (kind in CORRECTED)
    assert is_correctable(MESSAGES[kind], with_tool_calls=True) is (kind in CORRECTED_WITH_TOOL_CALLS)
    assert not is_correctable(HumanMessage(ANSWER))


def test_the_question_is_the_last_human_turn_of_any_input_shape() -> None:
    answer = AIMessage(ANSWER)
    conversation = [
        HumanMessage("Hi"),
        AIMessage("Hello!"),
        SystemMessage("Be brief."),
        HumanMessage(QUESTION),
    ]
    expected = [HumanMessage(QUESTION), answer]
    assert correction_input(conversation, answer) == expected
    assert correction_input(ChatPromptValue(messages=conversation), answer) == expected
    assert correction_input([("human", "Hi"), ("human", QUESTION)], answer) == expected
    assert correction_input(QUESTION, answer) == expected
    assert correction_input([SystemMessage("Be brief.")], answer) == [answer]


def test_a_pair_goes_under_the_aligners_own_keys() -> None:
    aligner = AlignerRunnable(backend="tgi", url="http://127.0.0.1:9", question_key="q", answer_key="a")
    assert pair_input(aligner, QUESTION, ANSWER) == {"q": QUESTION, "a": ANSWER}


def test_rejection() -> None:
    assert rejection(" \n", reject_degenerate=False) == "empty"
    loop = "1. " * 40
    assert rejection(loop, reject_degenerate=True) == "degenerate"
    assert rejection(loop, reject_degenerate=False) is None
    assert rejection("Never mix them.", reject_degenerate=True) is None
