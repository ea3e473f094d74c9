"""Turning Q-A-C records into token ids for supervised fine-tuning, framed exactly as inference frames them.

The prompt is :meth:`langchain_aligner.templates.AlignerTemplate.format` of the question and answer (the same
code :class:`~langchain_aligner.AlignerRunnable` uses, markers escaped the same way), tokenized as the serving
path tokenizes it: with the tokenizer's special tokens (TGI's ``/generate`` and the in-process backend add
BOS when the tokenizer adds one). The target follows the prompt: :data:`CORRECTION_SEPARATOR` (one space, as
the official Aligner writes after ``ASSISTANT:``), the correction, then EOS. Labels are ``-100`` on the
prompt, so the loss covers only the correction and EOS.

The correction's ids are taken from tokenizing the whole text ``prompt + " " + correction`` whenever the
prompt's ids are a prefix of it (true for byte-level BPE tokenizers such as SmolLM2's and for SentencePiece),
so the training sequence is the tokenization of the full string. Otherwise the separately tokenized
correction is appended to the prompt's own ids: the prompt stays exactly what inference sends.

Over-long records (more than ``max_length`` tokens with EOS): the prompt is fitted into ``max_length`` minus
a reserve for the target (a quarter of ``max_length``, or the whole target when shorter) by
:func:`langchain_aligner.truncation.fit_pair`, the code inference uses (the answer keeps its beginning, the
question its end); the correction's end is then cut to fill the rest. EOS is never cut.

``task="upstream"`` frames the same records for fine-tuning the upstream model on the corrections (the
weak-to-strong loop): the prompt is the tokenizer's chat template of the question alone (one user turn, with
the generation prompt: :func:`upstream_prompt`), tokenized as ``apply_chat_template`` tokenizes it (the
template brings its own special tokens); the target is the correction, directly after it, then EOS. The
original answer is not used. Over-long prompts keep the question's end; the rest is as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

from langchain_aligner.records import QACRecord
from langchain_aligner.templates import AlignerTemplate, get_template
from langchain_aligner.truncation import fit_pair

from .config import TASKS

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "CORRECTION_SEPARATOR",
    "EncodedRecord",
    "IGNORE_INDEX",
    "TASKS",
    "encode_record",
    "encode_records",
    "upstream_prompt",
]

CORRECTION_SEPARATOR = " "
"""Text between the prompt (ending in ``ASSISTANT:``) and the correction."""

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (the prompt); the value PyTorch's cross-entropy ignores."""

TARGET_RESERVE = 4
"""The target (correction + EOS) keeps at least ``max_length // TARGET_RESERVE`` tokens, if that long."""


class EncodedRecord(TypedDict):
    """One record's token ids, as the model trains on them: a row of :func:`encode_records`' dataset."""

    input_ids: list[int]
    attention_mask: list[int]
    labels: list[int]
    """``input_ids`` with :data:`IGNORE_INDEX` on the prompt: the loss covers the correction and EOS."""
    length: int
    """The sequence length (of each list), for length-grouped batching."""


def encode_record(
    record: QACRecord,
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: AlignerTemplate | str = "aligner-v1",
    max_length: int = 2048,
    task: str = "aligner",
) -> EncodedRecord:
    """Token ids of one record (an :class:`EncodedRecord`), at most ``max_length`` long.

    Args:
        record: The Q-A-C record.
        tokenizer: A Hugging Face tokenizer with an EOS token (and, for ``task="upstream"``, a chat template).
        template: The prompt template (a name, a text with placeholders, or an object), as at inference;
            ``task="aligner"`` only.
        max_length: The longest sequence; over-long records are shortened as the module docs describe.
        task: ``"aligner"``: the Aligner's prompt of question and answer; ``"upstream"``: the chat-templated
            question alone (see :func:`upstream_prompt`), to fine-tune the upstream model on corrections.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: a correction must end with one")
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8, got {max_length}")
    if task == "upstream":
        return _encode(tokenizer, _UpstreamFrame(tokenizer, record.question), record.correction, max_length)
    return _encode(
        tokenizer, _AlignerFrame(tokenizer, get_template(template), record), record.correction, max_length
    )


def upstream_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The upstream model's prompt for ``question``: the tokenizer's chat template applied to one user turn,
    with the generation prompt (what a chat server sends). Raises ``ValueError`` without a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "the tokenizer has no chat template, which task=upstream needs: set chat_template in the config "
            "(a Jinja template, as in train/configs/dpo-tiny.yaml)"
        )
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(prompt)


class _AlignerFrame:
    """The Aligner's prompt: the template of question and answer, tokenized with special tokens as served."""

    separator = CORRECTION_SEPARATOR
    special_tokens = True

    def __init__(self, tokenizer: PreTrainedTokenizerBase, template: AlignerTemplate, record: QACRecord):
        self.tokenizer, self.template, self.record = tokenizer, template, record

    def prompt(self, limit: int | None = None) -> str:
        """The prompt, shortened by :func:`fit_pair` to ``limit`` tokens when one is given."""
        if limit is None:
            return self.template.format(self.record.question, self.record.answer)
        try:
            return fit_pair(
                self.template,
                self.record.question,
                self.record.answer,
                limit=limit,
                count_tokens=lambda text: len(self.tokenizer(text)["input_ids"]),
            ).prompt
        except ValueError as error:
            raise ValueError(f"limit={limit} leaves too little room for the template") from error


class _UpstreamFrame:
    """The upstream model's prompt: the chat template of the question; the template brings its own special
    tokens (``apply_chat_template`` tokenizes without adding any); the assistant's text follows directly."""

    separator = ""
    special_tokens = False

    def __init__(self, tokenizer: PreTrainedTokenizerBase, question: str):
        self.tokenizer, self.question = tokenizer, question
        upstream_prompt(tokenizer, question)  # fails early without a chat template

    def prompt(self, limit: int | None = None) -> str:
        """The prompt; with ``limit``, the question keeps its end (as :func:`fit_pair` keeps it) so that the
        prompt has at most ``limit`` tokens."""
        text = upstream_prompt(self.tokenizer, self.question)
        if limit is None:
            return text
        question_ids = self.tokenizer(self.question, add_special_tokens=False)["input_ids"]
        excess = self._count(text) - limit
        while excess > 0:
            if not question_ids:
                raise ValueError(f"limit={limit} leaves too little room for the chat template")
            question_ids = question_ids[min(excess, len(question_ids)) :]
            text = upstream_prompt(self.tokenizer, str(self.tokenizer.decode(question_ids)))
            excess = self._count(text) - limit
        return text

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _encode(
    tokenizer: PreTrainedTokenizerBase,
    frame: _AlignerFrame | _UpstreamFrame,
    correction: str,
    max_length: int,
) -> EncodedRecord:
    """Prompt ids then correction + EOS, labels ``-100`` on the prompt, fitted into ``max_length``."""
    eos = tokenizer.eos_token_id
    prompt_ids, target = _split(tokenizer, frame, frame.prompt(), correction)
    target_length = len(target) + 1
    if len(prompt_ids) + target_length > max_length:
        reserve = min(target_length, max(max_length // TARGET_RESERVE, 2))
        if len(prompt_ids) > max_length - reserve:
            try:
                prompt = frame.prompt(limit=max_length - reserve)
            except ValueError as error:
                raise ValueError(
                    f"max_length={max_length} leaves too little room for the template"
                ) from error
            prompt_ids, target = _split(tokenizer, frame, prompt, correction)
        target = target[: max_length - len(prompt_ids) - 1]
    input_ids = [*prompt_ids, *target, eos]
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + [*target, eos],
        "length": len(input_ids),
    }


def encode_records(
    records: Sequence[QACRecord],
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: AlignerTemplate | str = "aligner-v1",
    max_length: int = 2048,
    num_proc: int | None = None,
    task: str = "aligner",
) -> datasets.Dataset:
    """Encode records into a :class:`datasets.Dataset` whose rows are :class:`EncodedRecord` s, in the order
    of ``records``.

    ``task`` frames each record as :func:`encode_record` does. ``num_proc`` > 1 tokenizes in that many
    processes (worth it from tens of thousands of records).
    """
    import datasets

    resolved = get_template(template)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "upstream":
        upstream_prompt(tokenizer, "")  # no chat template: fail here, not inside a worker process

    def encode(row: dict[str, str]) -> EncodedRecord:
        return encode_record(QACRecord(**row), tokenizer, template=resolved, max_length=max_length, task=task)

    ids = datasets.List(datasets.Value("int32"))
    features = datasets.Features(
        input_ids=ids, attention_mask=ids, labels=ids, length=datasets.Value("int32")
    )
    if not records:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    table = datasets.Dataset.from_list([record.model_dump() for record in records])
    return table.map(
        encode, remove_columns=table.column_names, features=features, num_proc=num_proc, desc="Tokenizing"
    )


def _split(
    tokenizer: PreTrainedTokenizerBase, frame: _AlignerFrame | _UpstreamFrame, prompt: str, correction: str
) -> tuple[list[int], list[int]]:
    """The prompt's ids as served, and the correction's ids that follow them (no EOS)."""
    special = frame.special_tokens
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    full_ids: list[int] = tokenizer(prompt + frame.separator + correction, add_special_tokens=special)[
        "input_ids"
    ]
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        target = full_ids[len(prompt_ids) :]
    else:
        target = tokenizer(frame.separator + correction, add_special_tokens=False)["input_ids"]
    if target and target[-1] == tokenizer.eos_token_id:
        target = target[:-1]  # a tokenizer that appends EOS itself: ours is added once, by the caller
    return prompt_ids, target
