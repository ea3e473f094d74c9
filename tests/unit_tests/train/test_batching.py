"""The padding collator: batches right-padded to the longest record, or to a multiple of a width."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from langchain_aligner_train.batching import IGNORE_INDEX, pad_collate
from langchain_aligner_train.config import ConfigError, SFTConfig


def _record(length: int, offset: int = 3) -> dict[str, list[int]]:
    ids = [offset + (i * 7) % 50 for i in range(length)]
    return {"input_ids": ids, "attention_mask": [1] * length, "labels": [IGNORE_INDEX] * 2 + ids[2:]}


def test_pad_collate_pads_to_the_longest_record_or_a_multiple() -> None:
    records = [_record(5), _record(11)]
    plain = pad_collate(records, pad_token_id=0)
    assert plain["input_ids"].shape == (2, 11)
    rounded = pad_collate(records, pad_token_id=0, pad_to_multiple_of=8)
    assert rounded["input_ids"].shape == (2, 16)
    assert pad_collate([_record(16)], pad_token_id=0, pad_to_multiple_of=8)["input_ids"].shape == (1, 16)
    # The padding is masked out of attention and loss; the records themselves are unchanged.
    for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
        assert torch.equal(rounded[key][:, :11], plain[key])
        assert (rounded[key][:, 11:] == fill).all()


def test_padding_to_a_multiple_does_not_change_the_loss(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    records = [_record(9), _record(21), _record(14)]
    with torch.no_grad():
        losses = [
            model(**pad_collate(records, pad_token_id=0, pad_to_multiple_of=multiple)).loss
            for multiple in (None, 32)
        ]
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-5)


def test_pad_to_multiple_of_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="pad_to_multiple_of must be positive"):
        SFTConfig(data=[{"kind": "jsonl", "path": "records.jsonl"}], pad_to_multiple_of=0)
