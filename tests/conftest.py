"""Shared fixtures. Keep one fixture per concept, with a docstring; add new ones below the existing ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_servers import FakeServer, start_fake_server


@pytest.fixture(scope="session")
def _tgi_server() -> Iterator[FakeServer]:
    server = start_fake_server("tgi")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeServer]:
    server = start_fake_server("openai")
    yield server
    server.stop()


@pytest.fixture
def tgi_server(_tgi_server: FakeServer) -> FakeServer:
    """A fake TGI server on 127.0.0.1 (see tests/fake_servers.py), its script reset for this test."""
    _tgi_server.reset()
    return _tgi_server


@pytest.fixture
def openai_server(_openai_server: FakeServer) -> FakeServer:
    """A fake OpenAI-compatible ``/v1/completions`` server on 127.0.0.1, its script reset for this test."""
    _openai_server.reset()
    return _openai_server


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, hidden size 32) and a small BPE tokenizer, saved in the export layout.

    Built offline from a config: no hub access. Its output is random but deterministic for a given seed.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "Edit the following Question-Answer pair to make it more helpful and harmless.",
        "USER: ASSISTANT:",
    ]
    bpe.train_from_iterator(corpus * 20, trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.save_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def printable_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama, its output weights zeroed for every token that is not printable ASCII text.

    Random weights otherwise pick byte tokens that never complete a UTF-8 character: their stream texts
    are empty while the whole text decodes them as U+FFFD, so streamed pieces would not add up. Zeroed rows
    get logit 0, below the best of the random others, so greedy decoding never picks them.
    """
    import torch

    from langchain_aligner.models import load_model_and_tokenizer

    target = tmp_path_factory.mktemp("printable-llama")
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    texts = [str(tokenizer.decode([i])) for i in range(len(tokenizer))]
    unprintable = [i for i, text in enumerate(texts) if not (text.isascii() and text.isprintable())]
    with torch.no_grad():
        model.lm_head.weight[unprintable] = 0
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
