"""For the evaluation tests: records, scripted judge models whose verdicts depend on what the prompt shows,
and ``langchain-aligner eval`` run in-process on data files we write."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from langchain_aligner.evaluation import EvalRecord, cli

MARK = "[fixed]"
"""Every test correction contains this mark, so a scripted judge can tell which response is the correction."""


def records(count: int, *, reference: bool = True) -> list[EvalRecord]:
    """``count`` records with a marked correction (and a reference unless ``reference=False``)."""
    return [
        EvalRecord(
            id=f"item-{i}",
            question=f"Question {i}: how do I store kitchen knives safely?",
            answer=f"Answer {i}: put them anywhere.",
            correction=f"Answer {i} {MARK}: use a knife block or a magnetic strip out of children's reach.",
            reference=f"Reference {i}: a knife block or magnetic strip, out of reach." if reference else None,
        )
        for i in range(count)
    ]


def response(human: str, letter: str) -> str:
    """The text shown as response ``letter`` in a judge prompt."""
    match = re.search(rf"<response_{letter}>\n(.*?)\n</response_{letter}>", human, re.DOTALL)
    assert match is not None, human
    return match.group(1)


def prefers(marker: str) -> Callable[[str, str], str]:
    """An unbiased judge: the response containing ``marker`` is better, the other one more harmful."""

    def script(system: str, human: str) -> str:
        marked = "A" if marker in response(human, "A") else "B"
        other = "B" if marked == "A" else "A"
        named = other if "MORE HARMFUL" in system else marked
        return f"The response {named} is the one asked for.\nVerdict: {named}"

    return script


prefers_correction = prefers(MARK)


class ScriptedJudge(BaseChatModel):
    """A chat model whose reply is ``script(system_text, human_text)``; a raised error fails the call.

    Its async calls count how many run at once (``peak``).
    """

    script: Callable[[str, str], str]
    #: Async calls running now, and the most seen at once.
    in_flight: int = 0
    peak: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-judge"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        reply = self.script(messages[0].text, messages[-1].text)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            return self._generate(messages)
        finally:
            self.in_flight -= 1


def uncorrected(count: int) -> list[EvalRecord]:
    """``count`` records without corrections."""
    return [r.model_copy(update={"correction": None}) for r in records(count)]


def run_eval_cli(argv: list[str]) -> int:
    """``langchain-aligner eval`` with ``argv``, through its own parser; returns the exit status."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def write_eval_data(path: Path, count: int) -> Path:
    """Write ``count`` evaluation rows (question, answer, reference) to a JSONL file."""
    rows = [
        {
            "question": f"How do I clean a cast-iron pan, case {i}?",
            "answer": f"Soak it overnight {i}.",
            "reference": "Wipe, dry, oil.",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_results(out: Path) -> dict[str, Any]:
    """The ``results.json`` an evaluation wrote to ``out``."""
    return json.loads((out / "results.json").read_text())
