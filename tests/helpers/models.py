"""Checking exported models: the files of the layout TGI loads, and a model's greedy ids for an Aligner
prompt."""

from __future__ import annotations

from typing import Any

import torch

TGI_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
}
PROMPT = "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair: Hi? | Hello. ASSISTANT:"


def greedy_ids(model: Any, tokenizer: Any, n: int = 8) -> list[int]:
    """The first ``n`` token ids ``model`` generates greedily for :data:`PROMPT`."""
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return output[0, inputs["input_ids"].shape[1] :].tolist()
