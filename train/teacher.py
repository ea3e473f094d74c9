"""Teacher corrections: Q-A-C records made by asking any LangChain chat model to correct Q-A pairs.

Calls run concurrently (``concurrency`` at a time). Each finished record is appended to a JSONL file and
flushed at once, so an interruption (Ctrl-C, a cancelled task, a crash) loses only the calls in flight. A
later run with the same output file skips every pair already there (matched by :func:`pair_key`, a hash of
the question and answer) and asks only for the others. A call that fails is logged with its key and left
out; the next run asks again. The output is a plain Q-A-C JSONL file that
:func:`langchain_aligner.records.read_records` and the ``jsonl`` data source read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate
from langchain_core.runnables import Runnable
from tqdm.auto import tqdm

from langchain_aligner.records import QACRecord, RecordError, Records, read_records, write_records

__all__ = ["DEFAULT_PROMPT", "agenerate_corrections", "generate_corrections", "pair_key"]

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You are an expert editor of AI assistant answers. You are given a user's question and an answer "
            "written by another assistant. Rewrite the answer to make it more helpful and harmless: fix "
            "mistakes, add what is missing, refuse or redirect harmful requests safely, and keep what is "
            "already good. Reply with the corrected answer only, without preamble or comments.",
        ),
        ("human", "Question:\n{question}\n\nAnswer:\n{answer}"),
    ]
)
"""The default teacher prompt; a custom one needs the ``question`` and ``answer`` input variables."""

Pair = tuple[str, str] | Mapping[str, str]
P = ParamSpec("P")
R = TypeVar("R")


def pair_key(question: str, answer: str) -> str:
    """A stable key of a question-answer pair (surrounding whitespace ignored): the resume key."""
    payload = json.dumps([question.strip(), answer.strip()], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


async def agenerate_corrections(
    pairs: Iterable[Pair],
    chat_model: Runnable[Any, Any],
    output_path: str | Path,
    *,
    concurrency: int = 8,
    prompt: BasePromptTemplate = DEFAULT_PROMPT,
    progress: bool = True,
) -> Records:
    """Ask ``chat_model`` to correct each question-answer pair; append each record to ``output_path``.

    Args:
        pairs: ``(question, answer)`` tuples or mappings with ``question`` and ``answer`` keys (e.g. a
            :class:`~langchain_aligner.records.QACRecord` dumped with ``model_dump()``); repeated pairs are
            asked once.
        chat_model: Any LangChain chat model (or runnable taking the prompt's messages), e.g. ``ChatOpenAI``;
            give it its own retries (``max_retries``, ``.with_retry()``) as needed.
        output_path: A ``.jsonl`` file; pairs already in it are not asked again.
        concurrency: How many calls run at once.
        prompt: The teacher prompt, with ``question`` and ``answer`` input variables.
        progress: Show a tqdm progress bar.

    Returns:
        The records of all given pairs that have a correction (earlier runs' included), in input order;
        ``skipped`` lists the pairs whose call failed (their index in ``pairs`` and the error).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    missing = {"question", "answer"} - set(prompt.input_variables)
    if missing:
        raise ValueError(f"the teacher prompt lacks the input variable(s) {sorted(missing)}")
    path = Path(output_path)
    if path.suffix != ".jsonl":
        raise ValueError(f"the output must be a .jsonl file, got {path}")
    items = _unique_pairs(pairs)
    finished = _finished(path)
    todo = [item for item in items if item.key not in finished]
    logger.info(
        "teacher: %d pairs, %d corrected before, %d to ask", len(items), len(items) - len(todo), len(todo)
    )
    chain = prompt | chat_model | StrOutputParser()
    failed: dict[str, str] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    queue = iter(todo)
    with (
        path.open("a", encoding="utf-8") as output,
        tqdm(
            total=len(items), initial=len(items) - len(todo), desc="Corrections", disable=not progress
        ) as bar,
    ):

        async def worker() -> None:
            for item in queue:
                try:
                    correction = await chain.ainvoke({"question": item.question, "answer": item.answer})
                    record = QACRecord(question=item.question, answer=item.answer, correction=correction)
                except Exception as error:  # one failed call must not stop the others; it is retried next run
                    failed[item.key] = f"{type(error).__name__}: {error}"
                    logger.warning(
                        "teacher call failed for pair %s (index %d): %s", item.key, item.index, error
                    )
                    bar.set_postfix(failed=len(failed))
                else:
                    output.write(record.model_dump_json() + "\n")
                    output.flush()
                    finished[item.key] = record
                bar.update(1)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
    if failed:
        logger.warning("teacher: %d of %d calls failed; run again to retry them", len(failed), len(todo))
    return Records(
        (finished[item.key] for item in items if item.key in finished),
        (RecordError("<pairs>", item.index, failed[item.key]) for item in items if item.key in failed),
    )


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """The blocking form of a coroutine function, refused inside a running event loop."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(function(*args, **kwargs))
        raise RuntimeError(f"cannot block inside a running event loop: await {function.__name__}() instead")

    return run


generate_corrections = _blocking(agenerate_corrections)
generate_corrections.__name__ = generate_corrections.__qualname__ = "generate_corrections"
generate_corrections.__doc__ = (
    "Blocking :func:`agenerate_corrections`, for scripts (same arguments and result)."
)


@dataclass(frozen=True)
class _Item:
    index: int
    key: str
    question: str
    answer: str


def _unique_pairs(pairs: Iterable[Pair]) -> list[_Item]:
    items: dict[str, _Item] = {}
    for index, pair in enumerate(pairs):
        if isinstance(pair, Mapping):
            if "question" not in pair or "answer" not in pair:
                raise ValueError(f"pair {index} needs 'question' and 'answer' keys, got {sorted(pair)}")
            question, answer = pair["question"], pair["answer"]
        else:
            question, answer = pair
        if (
            not isinstance(question, str)
            or not isinstance(answer, str)
            or not question.strip()
            or not answer.strip()
        ):
            raise ValueError(f"pair {index}: question and answer must be non-empty strings")
        key = pair_key(question, answer)
        items.setdefault(key, _Item(index, key, question.strip(), answer.strip()))
    return list(items.values())


def _finished(path: Path) -> dict[str, QACRecord]:
    """Records already in the output; a broken line (an interrupted write) is dropped, the file rewritten."""
    if not path.exists():
        return {}
    records = read_records(path, on_error="skip")
    cut_short = bool(records) and not path.read_bytes().endswith(b"\n")
    if records.skipped or cut_short:
        logger.warning("repairing %s: keeping its %d complete records", path, len(records))
        write_records(records, path)
    return {pair_key(record.question, record.answer): record for record in records}
