"""correct_answers: corrections by an Aligner served over HTTP (the fake TGI server), in the input order."""

from __future__ import annotations

import pytest

from langchain_aligner import AlignerRunnable
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from langchain_aligner_train.preference import (
    Correction,
    acorrect_answers,
    build_preference_data,
    correct_answers,
)

expected_correction = fake_aligner_reply


def test_correct_answers_over_tgi(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, backoff=0.01)
    # The first request fails with a 422 (not retried): that answer comes back uncorrected.
    tgi_server.script.fail = [422]
    pairs = [("Q one?", "A one."), {"question": "Q two?", "answer": "A two."}, ("Q three?", "")]

    corrections = correct_answers(pairs, aligner, max_concurrency=1)

    first, second, empty = corrections
    assert (first.corrected, first.correction) == (False, "A one.")
    assert first.error is not None and "validation" in first.error
    assert second == Correction(
        "Q two?", "A two.", expected_correction("Q two?", "A two."), finish_reason="eos_token"
    )
    assert (empty.corrected, empty.correction) == (False, "")
    assert empty.error is not None and empty.error.startswith("AlignerInputError")
    counts = build_preference_data(corrections).counts
    assert (counts.kept, counts.uncorrected, counts.empty) == (1, 1, 1)


async def test_acorrect_answers_keeps_the_input_order(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url)
    pairs = [(f"Question {i}?", f"Answer {i}.") for i in range(6)]

    corrections = await acorrect_answers(pairs, aligner, max_concurrency=3)

    assert [c.correction for c in corrections] == [expected_correction(q, a) for q, a in pairs]
    assert len(tgi_server.script.requests) == 6
    with pytest.raises(ValueError, match="max_concurrency"):
        await acorrect_answers(pairs, aligner, max_concurrency=0)


async def test_an_aligner_with_its_own_keys_corrects_every_pair(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, question_key="prompt", answer_key="response")
    pairs = [("Q one?", "A one."), {"question": "Q two?", "answer": "A two."}]
    expected = [expected_correction("Q one?", "A one."), expected_correction("Q two?", "A two.")]
    for corrections in (correct_answers(pairs, aligner), await acorrect_answers(pairs, aligner)):
        assert [(c.corrected, c.correction) for c in corrections] == [(True, text) for text in expected]
