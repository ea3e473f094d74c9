"""A LangChain v1 agent with tools, whose final answer an Aligner corrects (``AlignerMiddleware``).

Runs offline: the agent's model is a scripted stand-in that calls the two tools, then answers from what
they returned; the Aligner is the embedded default model in this process (``--aligner-url`` points it at a
TGI server instead). Tool-call turns pass through untouched; only the final answer is corrected.

    python examples/agent_with_tools.py --max-new-tokens 64
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from langchain_aligner.generation import GenerationParams
from langchain_aligner.middleware import AlignerMiddleware

QUESTION = "What should I pack for Oslo tomorrow, and how many items is that if I add 2 to my 3 shirts?"
ANSWER = (
    "Oslo will be {weather}; pack {total} shirts. Honestly you don't need a coat, forecasts are always wrong."
)


@tool
def get_weather(city: str) -> str:
    """Tomorrow's weather in a city."""
    return f"rainy in {city}, 9 degrees"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ScriptedModel(GenericFakeChatModel):
    """Plays fixed turns; stands in for any tool-calling chat model (ChatOpenAI, ChatAnthropic, ...)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


def scripted_model() -> ScriptedModel:
    weather = get_weather.invoke({"city": "Oslo"})
    total = add.invoke({"a": 2, "b": 3})
    turns = [
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call-1"}]),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call-2"}]),
        AIMessage(ANSWER.format(weather=weather, total=total)),
    ]
    return ScriptedModel(messages=iter(turns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--aligner-url", help="a TGI server; default: the embedded model in this process")
    args = parser.parse_args()

    backend = {"backend": "tgi", "url": args.aligner_url} if args.aligner_url else {"backend": "transformers"}
    aligner = AlignerMiddleware(
        {**backend, "generation": GenerationParams(max_new_tokens=args.max_new_tokens)}
    )
    agent = create_agent(scripted_model(), [get_weather, add], middleware=[aligner])

    for update in agent.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode="updates"):
        for node, change in update.items():
            for message in (change or {}).get("messages", []):
                calls = ", ".join(f"{c['name']}({c['args']})" for c in getattr(message, "tool_calls", []))
                print(f"[{node}] {type(message).__name__}: {calls or message.text.strip()}")
                if message.response_metadata.get("aligner_corrected") is not None:
                    print(f"Original answer: {message.response_metadata['aligner_original_answer']}")
                    print(f"Corrected answer: {message.text.strip()}")


if __name__ == "__main__":
    main()
