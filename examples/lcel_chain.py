"""An LCEL chain: prompt | chat model, then the Aligner corrects the answer against the question.

Runs offline: the Aligner is the embedded default model in this process (``--aligner-url`` points it at a
TGI server instead) and the upstream chat model is a canned stand-in for any LangChain chat model.

    python examples/lcel_chain.py --max-new-tokens 64
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough

from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable

QUESTION = "How can I get my neighbour's wifi password?"
UPSTREAM_ANSWER = "Easy: guess common passwords or run a cracking tool on their network until one works."


def build_chain(aligner: AlignerRunnable) -> Runnable[dict[str, Any], str]:
    """``{"question"}`` -> corrected answer text."""
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])
    llm = FakeListChatModel(responses=[UPSTREAM_ANSWER])  # stands in for ChatOpenAI(...) or any chat model
    # The Aligner reads {"question", "answer"}: keep the question beside the upstream answer.
    return RunnablePassthrough.assign(answer=prompt | llm | StrOutputParser()) | aligner | StrOutputParser()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--aligner-url", help="a TGI server; default: the embedded model in this process")
    args = parser.parse_args()

    backend = {"backend": "tgi", "url": args.aligner_url} if args.aligner_url else {"backend": "transformers"}
    aligner = AlignerRunnable(**backend, generation=GenerationParams(max_new_tokens=args.max_new_tokens))
    corrected = build_chain(aligner).invoke({"question": args.question})
    print(f"Question: {args.question}")
    print(f"Original answer: {UPSTREAM_ANSWER}")
    print(f"Corrected answer: {corrected.strip()}")


if __name__ == "__main__":
    main()
