"""``langchain-aligner eval``: correct, judge and score a file of question-answer records.

Three modes (one of them must be chosen):

- ``--judge openai:MODEL [--judge-base-url URL]``: the Aligner corrects the answers (a TGI or
  OpenAI-compatible server with ``--aligner-url``, else the embedded default Aligner in-process), a chat model
  judges correction vs original per dimension; reference metrics where records have references.
- ``--judge-none``: the Aligner corrects, and only reference metrics are computed.
- ``--reference-only``: no Aligner, no judge: the records' own corrections (field ``c=``) against their
  references, next to the copy-the-answer baseline; without a correction field, the baseline alone.

On the AlpacaEval files of ../shared/data (``--fields alpaca_eval``: q=instruction, a=original_output,
ref=output) the reference is Aligner-2B's correction: ``--reference-only`` then measures how far Aligner-2B
moved from the answers (the baseline row), and ``--judge-none`` how close another Aligner comes to Aligner-2B.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the rest is imported by run(), so that ``langchain-aligner --help`` stays fast
    from langchain_aligner.evaluation.runner import EvalResult
    from langchain_aligner.runnable import AlignerRunnable

__all__ = ["add_arguments", "judge_model", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to ``parser``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="FILE",
        help="Records: .json list or .jsonl, optionally .gz.",
    )
    data.add_argument(
        "--fields",
        default="default",
        help="Field map, e.g. 'q=instruction,a=original_output,ref=output' (names: id, q, a, ref, c), or a "
        "preset: 'default' (question, answer, reference, correction) or 'alpaca_eval'.",
    )
    data.add_argument("--limit", type=int, metavar="N", help="Evaluate only the first N records.")
    data.add_argument("--out", type=Path, required=True, metavar="DIR", help="Output directory.")

    aligner = parser.add_argument_group("aligner")
    aligner.add_argument(
        "--aligner-url", metavar="URL", help="TGI / OpenAI-compatible server URL (or a local model path)."
    )
    aligner.add_argument(
        "--aligner-backend",
        choices=["tgi", "openai", "transformers"],
        help="Default: tgi with --aligner-url, else the embedded default Aligner in-process (transformers).",
    )
    aligner.add_argument("--aligner-model", help="Model name sent to an OpenAI-compatible server.")
    aligner.add_argument("--template", default="aligner-v1", help="Aligner prompt template name.")
    aligner.add_argument("--max-new-tokens", type=int, default=512, help="Longest correction, in tokens.")
    aligner.add_argument("--aligner-retries", type=int, default=2, help="Retries of a failed Aligner call.")
    aligner.add_argument("--concurrency", type=int, default=8, help="Aligner and judge calls at once.")

    judge = parser.add_argument_group("judge")
    mode = judge.add_mutually_exclusive_group(required=True)
    mode.add_argument("--judge", metavar="PROVIDER:MODEL", help="Judge chat model, e.g. openai:gpt-4o.")
    mode.add_argument("--judge-none", action="store_true", help="Correct, but judge nothing.")
    mode.add_argument(
        "--reference-only", action="store_true", help="No Aligner, no judge: reference metrics only."
    )
    judge.add_argument(
        "--judge-base-url", metavar="URL", help="Base URL of an OpenAI-compatible judge (.../v1)."
    )
    judge.add_argument("--dimensions", help="Comma-separated subset of helpfulness,harmlessness,honesty.")
    judge.add_argument("--seed", type=int, default=0, help="Seed of the A/B order and of the bootstrap.")
    judge.add_argument("--resamples", type=int, default=10_000, help="Bootstrap resamples.")
    judge.add_argument("--level", type=float, default=0.95, help="Confidence level of the interval.")


def judge_model(spec: str, base_url: str | None = None) -> Any:
    """A chat model from ``PROVIDER:MODEL``.

    ``openai:MODEL`` builds a ``ChatOpenAI`` (temperature 0) for OpenAI or any OpenAI-compatible
    ``base_url`` (the key is ``OPENAI_API_KEY``, or ``"EMPTY"`` for a local server without one). Other
    providers go through LangChain's ``init_chat_model`` (the ``langchain`` package and the provider's).
    """
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise ValueError(f"judge spec {spec!r}: expected PROVIDER:MODEL, e.g. openai:gpt-4o")
    if provider == "openai":
        from langchain_openai import ChatOpenAI

        api_key = os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
        return ChatOpenAI(model=model, base_url=base_url, api_key=api_key, temperature=0)  # type: ignore[arg-type]
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as error:
        raise ValueError(
            f"judge provider {provider!r} needs the 'langchain' package (or use openai:)"
        ) from error
    return init_chat_model(model, model_provider=provider, base_url=base_url, temperature=0)


def _aligner(args: argparse.Namespace) -> AlignerRunnable:
    from langchain_aligner.generation import GenerationParams
    from langchain_aligner.runnable import AlignerRunnable

    backend: Literal["tgi", "openai", "transformers"] = args.aligner_backend or (
        "tgi" if args.aligner_url else "transformers"
    )
    return AlignerRunnable(
        backend=backend,
        url=args.aligner_url,
        model=args.aligner_model,
        template=args.template,
        generation=GenerationParams(max_new_tokens=args.max_new_tokens),
        on_error="return_original",
        max_retries=args.aligner_retries,
    )


def _exit_code(result: EvalResult) -> int:
    """1 when nothing could be corrected or no judge call succeeded (a wrong URL, say), else 0."""
    if result.aligner is not None and result.corrected == 0:
        return 1
    judged = sum(s.decided + s.unparsed for s in result.dimensions)
    return 1 if result.judge is not None and judged == 0 else 0


def run(args: argparse.Namespace) -> int:
    """Run ``langchain-aligner eval``; prints the report and returns the exit status.

    0: done; 1: no correction or no judge call succeeded; 2: bad input (the message goes to stderr).
    """
    try:
        return _exit_code(_evaluate(args))
    except (ValueError, OSError) as error:
        print(f"langchain-aligner eval: error: {error}", file=sys.stderr)
        return 2


def _evaluate(args: argparse.Namespace) -> EvalResult:
    from langchain_aligner.evaluation.judge import PairwiseJudge, dimension_names
    from langchain_aligner.evaluation.records import load_records, parse_field_map
    from langchain_aligner.evaluation.runner import Evaluation

    records = load_records(args.data, parse_field_map(args.fields), limit=args.limit)
    judge = None
    if args.judge:
        model = judge_model(args.judge, args.judge_base_url)
        judge = PairwiseJudge(
            model,
            dimensions=dimension_names(args.dimensions),
            seed=args.seed,
            max_concurrency=args.concurrency,
        )
    evaluation = Evaluation(
        aligner=None if args.reference_only else _aligner(args),
        judge=judge,
        max_concurrency=args.concurrency,
        resamples=args.resamples,
        level=args.level,
        seed=args.seed,
    )
    result = evaluation.run(records, out_dir=args.out)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    print(f"Outputs in {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    return result
