"""The examples run as scripts, offline, on the embedded default Aligner; a few tokens each.

Each example's correction is checked against the reference path: the same pair corrected in this process
by ``AlignerRunnable`` on the same model with the same greedy settings.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def reference() -> AlignerRunnable:
    """The embedded default Aligner, in this process."""
    return AlignerRunnable(backend="transformers", generation=GenerationParams(max_new_tokens=MAX_NEW_TOKENS))


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str) -> dict[str, str]:
    """Run an example; return its ``Label: value`` output lines by label (the last one of a label)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--max-new-tokens", str(MAX_NEW_TOKENS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)


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
