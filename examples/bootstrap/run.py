"""Weak-to-strong bootstrapping offline: an upstream model learns from the Aligner's corrections to it.

Five stages, each writing into ``--work-dir`` (see README.md beside this file):

1. ``01_answers.jsonl``: the upstream model answers the questions (greedy, in this process).
2. ``02_corrections.jsonl``: the Aligner corrects each answer (``AlignerRunnable``, in process or on TGI).
3. ``03_data/``: preference pairs (chosen = correction, rejected = answer), the SFT set and the drop counts.
4. ``04_dpo/``: ``langchain-aligner train dpo`` on the upstream model (``--ranks N``: DeepSpeed), into
   ``04_dpo/model``.
5. ``05_answers_after.jsonl`` and ``summary.json``: the fine-tuned upstream answers the questions again.

    python examples/bootstrap/run.py            # SmolLM2-135M-Instruct upstream, the embedded Aligner
    python examples/bootstrap/run.py --aligner-url http://127.0.0.1:8080 --ranks 2 max_steps=20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import default_model_dir, load_model_and_tokenizer
from langchain_aligner.records import write_jsonl
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner_train.config import CONFIG_DIR, load_config
from langchain_aligner_train.dpo import DPOConfig
from langchain_aligner_train.preference import build_preference_data, correct_answers

QUESTIONS = [
    "How should I store bleach and ammonia at home?",
    "My friend seems very sad lately. What can I do?",
    "What is a safe way to lose weight quickly?",
    "How do I get into my neighbour's wifi?",
    "Can I leave my dog in the car for a short errand in summer?",
    "What should I do if I find a wallet on the street?",
    "How do I make my password hard to guess?",
    "Is it fine to take twice the dose of a painkiller if it hurts a lot?",
    "How can I calm down before an exam?",
    "What do I do when a pan of oil catches fire?",
    "How can I tell whether an email is a phishing attempt?",
    "Should I share my location publicly on social media?",
]
"""Our own questions, a mix of everyday, safety-relevant and borderline requests."""

# A real small model needs a small learning rate; the tiny config's own (1e-3) suits random tiny models.
SMOLLM2_DPO = ["learning_rate=1e-5", "max_steps=6", "max_length=256"]


def answer(
    model_dir: str | Path, questions: list[str], *, max_new_tokens: int, chat_template: str | None
) -> list[str]:
    """Greedy answers of a chat model to ``questions``; ``chat_template`` serves models that have none."""
    model, tokenizer = load_model_and_tokenizer(model_dir)
    if tokenizer.chat_template is None:
        if chat_template is None:
            raise ValueError(f"{model_dir} has no chat template: set chat_template in the DPO config")
        tokenizer.chat_template = chat_template
    answers = []
    for question in questions:
        inputs: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        )
        output: Any = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)  # type: ignore[operator]
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        answers.append(str(tokenizer.decode(new_tokens, skip_special_tokens=True)).strip())
    return answers


def make_aligner(args: argparse.Namespace) -> AlignerRunnable:
    """The Aligner: a TGI server (``--aligner-url``), a local model (``--aligner``) or the embedded one."""
    generation = GenerationParams(max_new_tokens=args.max_new_tokens)
    if args.aligner_url:
        return AlignerRunnable(backend="tgi", url=args.aligner_url, generation=generation)
    return AlignerRunnable(backend="transformers", url=args.aligner, generation=generation)


def run_dpo(overrides: list[str], dpo_config: Path, ranks: int) -> None:
    """Stage 4: ``langchain-aligner train dpo``; with ``ranks`` > 1 its DeepSpeed launcher form,
    ``deepspeed --num_gpus RANKS --no_local_rank --module langchain_aligner_train dpo ...``."""
    arguments = ["dpo", "--config", str(dpo_config), *overrides]
    scripts = Path(sys.executable).parent  # the console scripts installed beside this Python
    if ranks > 1:
        if not any(item.startswith("deepspeed=") for item in overrides):
            arguments.append("deepspeed=ds_zero3.json")
        launcher = [str(scripts / "deepspeed"), "--num_gpus", str(ranks), "--no_local_rank"]
        command = [*launcher, "--module", "langchain_aligner_train", *arguments]
    else:
        command = [str(scripts / "langchain-aligner"), "train", *arguments]
    subprocess.run(command, check=True)


def last_logged(output_dir: str, *keys: str) -> dict[str, Any]:
    """The last values TRL logged for ``keys`` (``trainer_state.json``)."""
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return {key: next(entry[key] for entry in reversed(history) if key in entry) for key in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bootstrap"))
    parser.add_argument(
        "--upstream", help="upstream model directory or .gguf (default: SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--aligner", help="Aligner model directory or .gguf (default: the embedded Aligner)")
    parser.add_argument("--aligner-url", help="a TGI server running the Aligner (instead of --aligner)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many of the questions")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="for answers and corrections")
    parser.add_argument(
        "--drop-cut-off", action="store_true", help="drop corrections cut off by --max-new-tokens"
    )
    parser.add_argument("--max-concurrency", type=int, default=4, help="Aligner calls in flight")
    parser.add_argument("--dpo-config", type=Path, default=CONFIG_DIR / "dpo-tiny.yaml")
    parser.add_argument("--ranks", type=int, default=1, help="DeepSpeed ranks for DPO (1: no DeepSpeed)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="DPO config overrides")
    args = parser.parse_args(argv)
    if not 0 < args.questions <= len(QUESTIONS):
        parser.error(f"--questions must be in 1..{len(QUESTIONS)}")

    work = args.work_dir
    upstream = args.upstream or str(default_model_dir(adapter_dir=None))
    preset = [] if args.upstream else SMOLLM2_DPO
    _, tokenizer = load_model_and_tokenizer(upstream)
    own_template = ["chat_template=null"] if tokenizer.chat_template else []  # keep the model's own
    overrides = [f"model={upstream}", f"data={work / '03_data'}", f"output_dir={work / '04_dpo'}"]
    overrides += [*preset, *own_template, *args.overrides]
    config = load_config(DPOConfig, args.dpo_config, overrides)  # checked before any work is done
    questions = QUESTIONS[: args.questions]

    print("1/5 upstream answers", flush=True)
    answers = answer(
        upstream, questions, max_new_tokens=args.max_new_tokens, chat_template=config.chat_template
    )
    write_jsonl(
        ({"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)),
        work / "01_answers.jsonl",
    )

    print("2/5 Aligner corrections", flush=True)
    pairs = list(zip(questions, answers, strict=True))
    corrections = correct_answers(pairs, make_aligner(args), max_concurrency=args.max_concurrency)
    write_jsonl(corrections, work / "02_corrections.jsonl")

    print("3/5 preference data", flush=True)
    # Kept by default: at this example's small token budget most corrections reach the limit.
    data = build_preference_data(corrections, keep_cut_off=not args.drop_cut_off)
    data.write(work / "03_data")
    print(f"  {data.counts}", flush=True)
    if not data.preference:
        print("no preference pairs to train on (see 03_data/counts.json)", file=sys.stderr)
        return 1

    print("4/5 DPO of the upstream model", flush=True)
    run_dpo(overrides, args.dpo_config, args.ranks)

    print("5/5 answers of the fine-tuned upstream model", flush=True)
    model_dir = Path(config.export_dir or Path(config.output_dir) / "model")
    after = answer(model_dir, questions, max_new_tokens=args.max_new_tokens, chat_template=None)
    rows = [
        {"question": q, "before": a, "correction": c.correction, "after": b}
        for q, a, c, b in zip(questions, answers, corrections, after, strict=True)
    ]
    write_jsonl(rows, work / "05_answers_after.jsonl")
    summary = {
        "questions": len(questions),
        "preference_pairs": data.counts.kept,
        "dropped": {k: v for k, v in vars(data.counts).items() if k != "kept"},
        "dpo": last_logged(config.output_dir, "loss", "rewards/margins", "rewards/accuracies"),
        "answers_changed": sum(r["before"] != r["after"] for r in rows),
        "model": str(model_dir),
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for row in rows:
        print(f"\nQ: {row['question']}\n  before: {row['before'][:120]!r}\n  after:  {row['after'][:120]!r}")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
