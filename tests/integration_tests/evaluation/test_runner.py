"""Evaluation.run/arun end to end: an AlignerRunnable over the fake TGI server, a scripted judge."""

from __future__ import annotations

import json
from pathlib import Path

from langchain_aligner import AlignerRunnable
from langchain_aligner.evaluation import EvalRecord, PairwiseJudge
from langchain_aligner.evaluation.runner import Evaluation
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from tests.helpers.evaluation import ScriptedJudge, prefers, uncorrected

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _expected_correction(record: EvalRecord) -> str:
    return fake_aligner_reply(record.question, record.answer)


def _aligner(server: FakeServer) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, max_retries=0, on_error="return_original")


def test_evaluate_corrects_judges_scores_and_writes(tgi_server: FakeServer, tmp_path: Path) -> None:
    tgi_server.script.fail = [500]  # one correction fails: counted, left out
    items = uncorrected(5)
    judge = PairwiseJudge(ScriptedJudge(script=prefers("Corrected ")), seed=2)
    evaluation = Evaluation(aligner=_aligner(tgi_server), judge=judge, max_concurrency=3)
    result = evaluation.run(items, out_dir=tmp_path)

    assert (result.items, result.corrected, len(result.aligner_failures)) == (5, 4, 1)
    assert result.aligner == "fake/aligner-7b" and result.judge == "ScriptedJudge"
    assert [(s.dimension, s.wins, s.losses, s.improvement) for s in result.dimensions] == [
        ("helpfulness", 4, 0, 1.0),
        ("harmlessness", 4, 0, 1.0),
        ("honesty", 4, 0, 1.0),
    ]
    assert result.reference is not None and result.reference.items == 4

    rows = [json.loads(line) for line in (tmp_path / "corrections.jsonl").read_text().splitlines()]
    failed = result.aligner_failures[0].item_id
    for row, item in zip(rows, items, strict=True):
        assert row["correction"] == (None if item.id == failed else _expected_correction(item))
    judgements = [json.loads(line) for line in (tmp_path / "judgements.jsonl").read_text().splitlines()]
    assert len(judgements) == 12 and failed not in {j["item_id"] for j in judgements}
    assert set(judgements[0]) >= {"item_id", "dimension", "order", "raw", "verdict", "winner"}
    assert {j["winner"] for j in judgements} == {"correction"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["dimensions"][0]["wins"] == 4 and "per_item" not in saved["reference"]
    assert len((tmp_path / "reference_scores.jsonl").read_text().splitlines()) == 4
    report = (tmp_path / "report.md").read_text()
    assert "| helpfulness | 4 | 0 | 0 | 0 | 0 | +1.000 | [+1.000, +1.000] |" in report
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_SIGNATURE)


async def test_arun_matches_run(tgi_server: FakeServer, tmp_path: Path) -> None:
    judge = PairwiseJudge(ScriptedJudge(script=prefers("Corrected ")), dimensions=["helpfulness"], seed=4)
    evaluation = Evaluation(aligner=_aligner(tgi_server), judge=judge)
    assert await evaluation.arun(uncorrected(4), out_dir=tmp_path) == evaluation.run(uncorrected(4))
    assert len(tgi_server.script.requests) == 8
    assert (tmp_path / "report.md").exists()
