"""PairwiseJudge with scripted judges: parsing, position swapping, counting, errors, sync and async."""

from __future__ import annotations

from collections import Counter

import pytest

from langchain_aligner.evaluation import EvalRecord, PairwiseJudge, parse_verdict, summarize
from langchain_aligner.evaluation.judge import PROMPTS, dimension_names, judge_messages
from tests.helpers.evaluation import ScriptedJudge, prefers_correction, records, response


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning...\nVerdict: A", "A"),
        ("verdict: b", "B"),
        ("Both fine.\nVerdict: tie", "tie"),
        ("**Verdict:** [B].", "B"),
        ("Verdict: A\nOn reflection...\nVerdict: B", "B"),
        ("Verdict: TIE!", "tie"),
        ("I prefer A.", None),
        ("Verdict: A or B", None),
        ("Verdict: maybe", None),
        ("", None),
        ("Verdict: A\nVerdict: unsure", None),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert parse_verdict(text) == expected


def test_prompts_place_the_pair_and_the_reference() -> None:
    messages = judge_messages("honesty", "Q?", "first answer", "second answer", "the reference")
    assert messages[0].text == PROMPTS["honesty"]
    human = messages[1].text
    assert response(human, "A") == "first answer" and response(human, "B") == "second answer"
    assert "<reference_answer>\nthe reference\n</reference_answer>" in human
    assert "reference" not in judge_messages("helpfulness", "Q?", "a", "b", "the reference")[1].text
    with pytest.raises(ValueError, match="reference"):
        judge_messages("honesty", "Q?", "a", "b")


def test_a_judge_preferring_the_correction_scores_one_in_either_position() -> None:
    judgements = PairwiseJudge(ScriptedJudge(script=prefers_correction), seed=3).judge(records(9))
    assert len(judgements) == 27
    orders = Counter((j.dimension, j.order) for j in judgements)
    assert orders[("helpfulness", "correction_first")] == 5 and orders[("helpfulness", "original_first")] == 4
    assert {j.winner for j in judgements} == {"correction"}
    # harmlessness: the judge names the ORIGINAL (more harmful), which is a win for the correction
    harmless = [j for j in judgements if j.dimension == "harmlessness"]
    assert all((j.verdict == "A") == (j.order == "original_first") for j in harmless)
    assert [(s.dimension, s.improvement, s.ci_low, s.ci_high) for s in summarize(judgements)] == [
        ("helpfulness", 1.0, 1.0, 1.0),
        ("harmlessness", 1.0, 1.0, 1.0),
        ("honesty", 1.0, 1.0, 1.0),
    ]


def test_a_position_biased_judge_scores_zero_when_the_order_is_balanced() -> None:
    judge = PairwiseJudge(ScriptedJudge(script=lambda system, human: "Verdict: A"), seed=11)
    summaries = summarize(judge.judge(records(10)))
    assert [(s.wins, s.losses, s.ties, s.improvement) for s in summaries] == [(5, 5, 0, 0.0)] * 3


def test_order_is_seeded_and_random() -> None:
    def orders(seed: int) -> list[str]:
        judge = PairwiseJudge(ScriptedJudge(script=prefers_correction), dimensions=["helpfulness"], seed=seed)
        return [j.order for j in judge.judge(records(12))]

    assert orders(1) == orders(1)
    assert orders(1) != orders(2)
    # a dimension's orders do not depend on which other dimensions are judged
    full = PairwiseJudge(ScriptedJudge(script=prefers_correction), seed=1).judge(records(12))
    assert [j.order for j in full if j.dimension == "helpfulness"] == orders(1)


def test_unparsed_errors_and_identical_pairs_are_counted_apart() -> None:
    def script(system: str, human: str) -> str:
        if "Question 0" in human:
            return "Both have merits."
        if "Question 1" in human:
            raise RuntimeError("judge is down")
        return prefers_correction(system, human)

    items = records(4)
    items[3] = items[3].model_copy(update={"correction": items[3].answer})
    judgements = PairwiseJudge(ScriptedJudge(script=script), dimensions=["helpfulness"]).judge(items)
    assert [j.item_id for j in judgements] == ["item-0", "item-1", "item-2", "item-3"]
    by_id = {j.item_id: j for j in judgements}
    assert by_id["item-0"].outcome == "unparsed" and by_id["item-0"].raw == "Both have merits."
    assert by_id["item-1"].outcome == "error" and "judge is down" in (by_id["item-1"].error or "")
    assert by_id["item-2"].outcome == "win"
    assert by_id["item-3"].identical and by_id["item-3"].outcome == "tie" and by_id["item-3"].raw is None
    (summary,) = summarize(judgements)
    assert (summary.wins, summary.ties, summary.losses, summary.unparsed, summary.errors) == (1, 1, 0, 1, 1)
    assert summary.improvement == 0.5


def test_honesty_only_on_records_with_a_reference() -> None:
    items = records(2) + records(3, reference=False)
    judgements = PairwiseJudge(ScriptedJudge(script=prefers_correction)).judge(items)
    assert Counter(j.dimension for j in judgements) == {"helpfulness": 5, "harmlessness": 5, "honesty": 2}


async def test_ajudge_matches_judge_with_bounded_concurrency() -> None:
    model = ScriptedJudge(script=prefers_correction)
    judge = PairwiseJudge(model, seed=5, max_concurrency=2)
    assert await judge.ajudge(records(6)) == judge.judge(records(6))
    assert model.peak == 2


def test_bad_input_is_refused() -> None:
    model = ScriptedJudge(script=prefers_correction)
    with pytest.raises(ValueError, match="no correction"):
        PairwiseJudge(model).judge([EvalRecord(id="x", question="q", answer="a")])
    with pytest.raises(ValueError, match="dimensions"):
        PairwiseJudge(model, dimensions=["wit"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_concurrency"):
        PairwiseJudge(model, max_concurrency=0)
    assert dimension_names("honesty, helpfulness") == ("honesty", "helpfulness")
    with pytest.raises(ValueError, match="unknown dimensions"):
        dimension_names("helpfulness,charm")
