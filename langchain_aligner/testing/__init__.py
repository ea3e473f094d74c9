"""Offline stand-ins that the test suite and the benchmarks share, importable from the installed package.

This module builds models: a tiny random Llama with its own small BPE tokenizer (:func:`save_tiny_llama`), a
random Llama, or sliding-window Mistral, of any size for a given tokenizer (:func:`random_llama`), and a LoRA
adapter with non-zero weights (:func:`save_random_adapter`). Everything is built from a config and a seed (no
hub access) and is deterministic: the same call gives the same weights. torch, transformers and peft are
imported when called, so importing this module stays cheap. :func:`cli_command` is the command line of the
installed ``langchain-aligner`` script, for tests that run it as users do.

:mod:`langchain_aligner.testing.fake_servers` has real HTTP servers on 127.0.0.1 that speak TGI's and OpenAI's
wire formats, scriptable per test (it needs the ``serve`` extra: FastAPI and uvicorn).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["cli_command", "random_llama", "save_random_adapter", "save_tiny_llama"]

TOKENIZER_CORPUS = (
    "Edit the following Question-Answer pair to make it more helpful and harmless.",
    "USER: ASSISTANT:",
)
"""The text the tiny tokenizer's merges are learnt from: the Aligner prompt's words become single tokens."""


def random_llama(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    layers: int = 2,
    max_positions: int = 256,
    sliding_window: int | None = None,
    seed: int = 0,
) -> PreTrainedModel:
    """A Llama with random weights (``torch.manual_seed(seed)``) for ``tokenizer``'s vocabulary and special
    tokens: 4 attention heads over 2 key-value heads, the other sizes as given.

    With ``sliding_window``, a Mistral of the same shape instead: Llama's architecture with attention limited
    to the last ``sliding_window`` positions.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(seed)
    if sliding_window is None:
        return LlamaForCausalLM(LlamaConfig(**shape))
    return MistralForCausalLM(MistralConfig(sliding_window=sliding_window, **shape))


def save_tiny_llama(target: str | Path) -> Path:
    """Write a tiny random Llama (2 layers, hidden size 32) and a small byte-level BPE tokenizer (300 tokens,
    learnt from :data:`TOKENIZER_CORPUS`; pad = eos) to ``target``, in the layout the export writes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    target = Path(target)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(list(TOKENIZER_CORPUS) * 20, trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.save_pretrained(target)
    random_llama(tokenizer).save_pretrained(target)
    return target


def save_random_adapter(
    base_dir: str | Path,
    target: str | Path,
    *,
    seed: int = 0,
    r: int = 4,
    alpha: int = 8,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
) -> Path:
    """Write a LoRA adapter for the model in ``base_dir`` with random, non-zero weights (so merging it changes
    the model; ``torch.manual_seed(seed)``) to ``target``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from langchain_aligner.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(base_dir)
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules), init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(target))
    return Path(target)


def cli_command(*args: str) -> list[str]:
    """The command line of ``langchain-aligner ARGS``: the console script installed beside this Python."""
    return [str(Path(sys.executable).parent / "langchain-aligner"), *args]
