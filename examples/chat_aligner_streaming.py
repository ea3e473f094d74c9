"""``ChatAligner``: a chat model whose answers are corrected, streamed token by token.

Runs offline: the Aligner is the embedded default model in this process (``--aligner-url`` points it at a
TGI server instead) and the inner chat model is a canned stand-in for any LangChain chat model.

    python examples/chat_aligner_streaming.py --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio

from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessageChunk

from langchain_aligner.chat_model import ChatAligner

QUESTION = "My code review got harsh comments. Should I reply angrily?"
INNER_ANSWER = "Yes, tell them exactly what you think of their review; they deserve it."


async def stream_answer(model: ChatAligner, question: str) -> AIMessageChunk:
    """Print the corrected answer as it is generated; return the whole message."""
    full: AIMessageChunk | None = None
    async for chunk in model.astream(question):
        print(chunk.text, end="", flush=True)
        full = chunk if full is None else full + chunk
    print()
    assert full is not None
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--aligner-url", help="a TGI server; default: the embedded model in this process")
    args = parser.parse_args()

    backend = {"backend": "tgi", "url": args.aligner_url} if args.aligner_url else {"backend": "transformers"}
    model = ChatAligner(
        llm=FakeListChatModel(responses=[INNER_ANSWER]),  # stands in for ChatOpenAI(...) or any chat model
        aligner=backend,
        max_tokens=args.max_new_tokens,
    )
    print(f"Question: {args.question}")
    print("Corrected answer (streamed): ", end="")
    message = asyncio.run(stream_answer(model, args.question))
    print(f"Original answer: {message.response_metadata['aligner_original_answer']}")
    print(f"Corrected answer: {message.text.strip()}")


if __name__ == "__main__":
    main()
