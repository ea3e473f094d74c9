"""Training and inference prompts agree: what AlignerRunnable sends to a served Aligner (the fake TGI server)
tokenizes as training frames the same record, whatever whitespace surrounds the question and answer."""

from __future__ import annotations

from typing import Any

from langchain_aligner import AlignerRunnable
from langchain_aligner.records import QACRecord
from langchain_aligner.testing.fake_servers import FakeServer
from langchain_aligner_train.tokenization import IGNORE_INDEX, encode_record


def test_runnable_prompt_and_training_prompt_agree_on_surrounding_whitespace(
    smollm2_tokenizer: Any, tgi_server: FakeServer
) -> None:
    question, answer = "  How do I boil an egg?\n", "\n\nJust boil it.\n"
    AlignerRunnable(backend="tgi", url=tgi_server.url).invoke({"question": question, "answer": answer})
    served_ids = smollm2_tokenizer(tgi_server.script.requests[0]["inputs"])["input_ids"]
    record = QACRecord(question=question, answer=answer, correction="Boil it for 8 minutes.")
    encoded = encode_record(record, smollm2_tokenizer)
    prompt_length = encoded["labels"].count(IGNORE_INDEX)
    trained_ids = encoded["input_ids"][:prompt_length]
    assert served_ids == trained_ids
