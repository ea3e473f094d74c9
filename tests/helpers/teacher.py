"""A scripted teacher for the teacher-correction tests: its questions and answers, and a chat model that
corrects by upper-casing (run in a child process too, which imports it from here), and the records a run
wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

PAIRS = [(f"Question {i}?", f"Answer {i}.") for i in range(12)]


class EditorModel(BaseChatModel):
    """Corrects an answer by upper-casing it; fails on answers containing ``fail_on``; calls after the first
    ``block_after`` wait forever (an interruption finds them in flight)."""

    fail_on: str | None = None
    block_after: int | None = None
    calls: list[str] = Field(default_factory=list)
    started: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    @property
    def _llm_type(self) -> str:
        return "editor"

    def _answer(self, messages: list[BaseMessage]) -> str:
        answer = messages[-1].text.rsplit("Answer:\n", 1)[1]
        self.calls.append(answer)
        if self.fail_on is not None and self.fail_on in answer:
            raise RuntimeError(f"refused {answer}")
        return answer.upper()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._answer(messages)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.block_after is not None and self.started > self.block_after:
                await asyncio.Event().wait()
            await asyncio.sleep(0.01)
            return self._generate(messages)
        finally:
            self.in_flight -= 1


def written_lines(path: Path) -> list[dict[str, str]]:
    """The records a teacher run has written to ``path`` so far, one per line."""
    return [json.loads(line) for line in path.read_text().splitlines()]
