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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_aligner.templates import AlignerTemplate, get_template
from langchain_aligner.truncation import fit_pair
from train.records import QACRecord

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

__all__ = ["CORRECTION_SEPARATOR", "IGNORE_INDEX", "encode_record", "encode_records"]

CORRECTION_SEPARATOR = " "
"""Text between the prompt (ending in ``ASSISTANT:``) and the correction."""

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (the prompt); the value PyTorch's cross-entropy ignores."""

TARGET_RESERVE = 4
"""The target (correction + EOS) keeps at least ``max_length // TARGET_RESERVE`` tokens, if that long."""


def encode_record(
    record: QACRecord,
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: AlignerTemplate | str = "aligner-v1",
    max_length: int = 2048,
) -> dict[str, list[int]]:
    """Token ids of one record: ``{"input_ids", "attention_mask", "labels"}``, at most ``max_length`` long.

    Args:
        record: The Q-A-C record.
        tokenizer: A Hugging Face tokenizer with an EOS token.
        template: The prompt template (a name, a text with placeholders, or an object), as at inference.
        max_length: The longest sequence; over-long records are shortened as the module docs describe.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: a correction must end with one")
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8, got {max_length}")
    template = get_template(template)
    prompt = template.format(record.question, record.answer)
    prompt_ids, target = _split(tokenizer, prompt, record.correction)
    target_length = len(target) + 1
    if len(prompt_ids) + target_length > max_length:
        reserve = min(target_length, max(max_length // TARGET_RESERVE, 2))
        if len(prompt_ids) > max_length - reserve:
            try:
                prompt = fit_pair(
                    template,
                    record.question,
                    record.answer,
                    limit=max_length - reserve,
                    count_tokens=lambda text: len(tokenizer(text)["input_ids"]),
                ).prompt
            except ValueError as error:
                raise ValueError(
                    f"max_length={max_length} leaves too little room for the template"
                ) from error
            prompt_ids, target = _split(tokenizer, prompt, record.correction)
        target = target[: max_length - len(prompt_ids) - 1]
    input_ids = [*prompt_ids, *target, eos]
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + [*target, eos],
    }


def encode_records(
    records: Sequence[QACRecord],
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: AlignerTemplate | str = "aligner-v1",
    max_length: int = 2048,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Encode records into a :class:`datasets.Dataset` with ``input_ids``, ``attention_mask``, ``labels``
    and ``length`` (the sequence length, for length-grouped batching); the order of ``records`` is kept.

    ``num_proc`` > 1 tokenizes in that many processes (worth it from tens of thousands of records).
    """
    import datasets

    resolved = get_template(template)

    def encode(row: dict[str, str]) -> dict[str, Any]:
        encoded: dict[str, Any] = encode_record(
            QACRecord(**row), tokenizer, template=resolved, max_length=max_length
        )
        encoded["length"] = len(encoded["input_ids"])
        return encoded

    ids = datasets.List(datasets.Value("int32"))
    features = datasets.Features(
        {"input_ids": ids, "attention_mask": ids, "labels": ids, "length": datasets.Value("int32")}
    )
    if not records:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    table = datasets.Dataset.from_list([record.model_dump() for record in records])
    return table.map(
        encode, remove_columns=table.column_names, features=features, num_proc=num_proc, desc="Tokenizing"
    )


def _split(tokenizer: PreTrainedTokenizerBase, prompt: str, correction: str) -> tuple[list[int], list[int]]:
    """The prompt's ids as served, and the correction's ids that follow them (no EOS)."""
    prompt_ids: list[int] = tokenizer(prompt)["input_ids"]
    full_ids: list[int] = tokenizer(prompt + CORRECTION_SEPARATOR + correction)["input_ids"]
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        target = full_ids[len(prompt_ids) :]
    else:
        target = tokenizer(CORRECTION_SEPARATOR + correction, add_special_tokens=False)["input_ids"]
    if target and target[-1] == tokenizer.eos_token_id:
        target = target[:-1]  # a tokenizer that appends EOS itself: ours is added once, by the caller
    return prompt_ids, target
