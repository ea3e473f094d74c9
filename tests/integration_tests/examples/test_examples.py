"""The examples run as scripts, offline, on the embedded default Aligner; a few tokens each.

Each example's correction is checked against the reference path: the same pair corrected in this process
by ``AlignerRunnable`` on the same model with the same greedy settings.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable
from tests.helpers.examples import EXAMPLES, load_script, run_script

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def reference() -> AlignerRunnable:
    """The embedded default Aligner, in this process."""
    return AlignerRunnable(backend="transformers", generation=GenerationParams(max_new_tokens=MAX_NEW_TOKENS))


def load(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py")


def run(name: str) -> dict[str, str]:
    """Run an example; return its ``Label: value`` output lines by label (the last one of a label)."""
    return run_script(EXAMPLES / f"{name}.py", "--max-new-tokens", str(MAX_NEW_TOKENS))


def correction(reference: AlignerRunnable, question: str, answer: str) -> str:
    return reference.invoke({"question": question, "answer": answer}).text.strip()


def test_lcel_chain(reference: AlignerRunnable) -> None:
    example = load("lcel_chain")
    output = run("lcel_chain")
    assert output["Original answer"] == example.UPSTREAM_ANSWER
    assert output["Corrected answer"] == correction(reference, example.QUESTION, example.UPSTREAM_ANSWER)


def test_agent_with_tools(reference: AlignerRunnable) -> None:
    example = load("agent_with_tools")
    output = run("agent_with_tools")
    weather = example.get_weather.invoke({"city": "Oslo"})
    answer = example.ANSWER.format(weather=weather, total=5)
    assert output["[model] AIMessage"] == output["Corrected answer"]  # the state holds the correction
    assert output["[tools] ToolMessage"] == "5"  # the last tool result
    assert output["Original answer"] == answer
    assert output["Corrected answer"] == correction(reference, example.QUESTION, answer)


def test_chat_aligner_streaming(reference: AlignerRunnable) -> None:
    example = load("chat_aligner_streaming")
    output = run("chat_aligner_streaming")
    expected = correction(reference, example.QUESTION, example.INNER_ANSWER)
    assert output["Original answer"] == example.INNER_ANSWER
    assert output["Corrected answer"] == expected
    assert output["Corrected answer (streamed)"].strip() == expected
