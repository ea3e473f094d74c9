"""DPO of the upstream model on (correction > original answer) pairs, with TRL's ``DPOTrainer`` and DeepSpeed.

``langchain-aligner train dpo --config train/configs/dpo-upstream.yaml model=/models/upstream data=DIR``
(one process; DeepSpeed, if configured, in a world of one); with the DeepSpeed launcher: ``deepspeed
--num_gpus N --no_local_rank --module langchain_aligner_train dpo --config ...``. ``--resume`` continues an
interrupted run from its last complete checkpoint.

The data is the ``preference.jsonl`` that :mod:`.preference` writes (TRL's preference format,
conversational or standard). Training ends with the model exported by
:func:`langchain_aligner.models.export_model` (a LoRA adapter merged in first) to ``export_dir``, ready for
TGI, vLLM or the in-process backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_aligner.models import export_model, load_model_and_tokenizer, merge_adapter
from langchain_aligner.records import RecordError, read_objects

from .cli import PROG as TRAIN_PROG
from .cli import report_input_errors
from .config import (
    TrainingConfig,
    check_model_and_deepspeed,
    check_values,
    config_help,
    inherited,
    load_config,
)
from .errors import ConfigError, InputFileNotFound
from .run_lock import hold_run_directory, launch_rank

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel
    from trl import DPOConfig as TRLDPOConfig

__all__ = ["DPOConfig", "DPOResult", "last_checkpoint", "load_preference_dataset", "main", "train_dpo"]

logger = logging.getLogger(__name__)

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
PRECISIONS = ("bf16", "fp16", "fp32")
EXPORT_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""The exported model keeps the training precision."""


@dataclass
class DPOConfig(TrainingConfig):
    """Preference tuning of an upstream model: :class:`~.config.TrainingConfig`'s keys (with DPO's
    defaults) and DPO's own; ``train/configs/dpo-upstream.yaml`` spells out the defaults. With LoRA the
    reference is the base without the adapter."""

    num_epochs: int = inherited("num_epochs", 1)
    learning_rate: float = inherited("learning_rate", 5e-7)
    warmup_ratio: float = inherited("warmup_ratio", 0.1)
    per_device_batch_size: int = inherited("per_device_batch_size", 2)
    gradient_accumulation_steps: int = inherited("gradient_accumulation_steps", 8)
    gradient_checkpointing: bool = inherited("gradient_checkpointing", True)
    precision: str = field(
        default="bf16",
        metadata={
            "help": "DeepSpeed's (or torch's) bf16/fp16 mixed precision, or plain fp32",
            "choices": PRECISIONS,
        },
    )
    output_dir: str = inherited("output_dir", "runs/dpo-upstream")
    lr_scheduler: str = field(
        default="cosine",
        metadata={
            "help": "learning rate schedule after the linear warm-up: a transformers scheduler name "
            "(cosine, linear, constant, cosine_with_restarts, ...)"
        },
    )

    data: str = field(
        default="",
        metadata={
            "help": "a preference JSONL file, or a directory holding preference.jsonl "
            "(langchain_aligner_train.preference)"
        },
    )
    max_length: int | None = field(
        default=1024,
        metadata={"help": "prompt plus answer tokens; longer pairs are cut at the end; null: no limit"},
    )
    beta: float = field(
        default=0.1,
        metadata={
            "help": "strength of the pull towards the reference (the model before training); higher: "
            "smaller steps"
        },
    )
    loss_type: str = field(
        default="sigmoid", metadata={"help": "TRL's DPO loss (sigmoid: the DPO paper's; ipo, hinge, ...)"}
    )
    export_dir: str | None = field(
        default=None, metadata={"help": "where the trained model is exported; null: <output_dir>/model"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_values(
            {
                "model is required (a model directory or .gguf file)": bool(self.model),
                "data is required (a preference JSONL file or its directory)": bool(self.data),
                "max_length must be positive": self.max_length is None or self.max_length > 0,
                "beta must be positive": self.beta > 0,
                "lora.init_from is for SFT only": self.lora is None or self.lora.init_from is None,
            }
        )


@dataclass
class DPOResult:
    """What :func:`train_dpo` produced (on every rank; only rank 0 writes the export)."""

    export_dir: Path
    main_process: bool
    """True on the rank that wrote the export (rank 0)."""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    """TRL's logged records: ``loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ..."""


def load_preference_dataset(path: str | Path) -> Dataset:
    """Read preference rows (``prompt``, ``chosen``, ``rejected``) from a JSONL file or its directory.

    Raises:
        InputFileNotFound: No such file.
        RecordError: A bad row (naming the file and line), or no rows at all.
    """
    from datasets import Dataset

    path = Path(path)
    if path.is_dir():
        path = path / "preference.jsonl"
    if not path.is_file():
        raise InputFileNotFound(f"preference data not found: {path}")
    rows = read_objects(path)
    for position, row in enumerate(rows, 1):
        missing = [key for key in PREFERENCE_KEYS if key not in row]
        if missing:
            raise RecordError(
                path, position, f"missing field(s) {missing}; a preference row has {PREFERENCE_KEYS}"
            )
    if not rows:
        raise RecordError(path, None, "no preference rows")
    return Dataset.from_list(rows)


def train_dpo(config: DPOConfig) -> DPOResult:
    """Train ``config.model`` on ``config.data`` with TRL's ``DPOTrainer``, then export it.

    With ``config.deepspeed`` set, every rank runs this under the DeepSpeed launcher, or a single process runs
    it as a world of one. With ``config.resume``, training continues from :func:`last_checkpoint`.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    from trl import DPOTrainer

    from .trainer import silence_known_warnings, standalone_world

    silence_known_warnings()
    if config.deepspeed is not None:
        _check_deepspeed_precision(config)
        standalone_world()  # DeepSpeed without its launcher: a world of one, as `train sft` runs
    dataset = load_preference_dataset(config.data)
    model, tokenizer = load_model_and_tokenizer(config.model)
    if config.chat_template is not None:
        tokenizer.chat_template = config.chat_template
    trainer = DPOTrainer(
        model=model,
        args=_trl_config(config),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=config.lora.to_peft() if config.lora is not None else None,
    )
    checkpoint = last_checkpoint(config.output_dir) if config.resume else None
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    trainer.save_state()
    # save_model gathers ZeRO-3 shards (stage3_gather_16bit_weights_on_model_save); every rank must call it.
    final_dir = Path(config.output_dir) / "final"
    trainer.save_model(str(final_dir))
    # Training is over: models loaded from here on are plain ones, not ZeRO-3 partitioned (which would wait
    # for the other ranks to load too).
    unset_hf_deepspeed_config()
    export_dir = Path(config.export_dir or Path(config.output_dir) / "model")
    main_process = trainer.is_world_process_zero()
    if main_process:
        export_model(_trained_model(config, final_dir), tokenizer, export_dir)
        logger.info("exported the DPO-trained model to %s", export_dir)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()  # closes the process group: ranks then exit cleanly
    return DPOResult(export_dir, main_process, list(trainer.state.log_history))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The last complete ``checkpoint-N`` in ``output_dir``: its ``trainer_state.json``, written after the
    weights, optimizer and RNG states, is there and whole. ``None`` if there is none. A checkpoint cut short
    by a kill is passed over."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    def complete(path: Path) -> bool:
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return path.name.split("-")[-1].isdigit()

    checkpoints = [path for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if complete(path)]
    return max(checkpoints, key=lambda path: int(path.name.split("-")[-1]), default=None)


def main(argv: list[str] | None = None) -> int:
    """``langchain-aligner train dpo --config CONFIG.yaml [key=value ...]``; bad input is reported in one
    line naming the file and line or the key, with exit status 2 (rank 0 checks the model and DeepSpeed
    config first)."""
    prog = f"{TRAIN_PROG} dpo"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.splitlines()[0],
        epilog=config_help(DPOConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="a YAML or JSON DPO config")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (YAML values)")
    args = parser.parse_args(argv)
    with report_input_errors(prog):
        config = load_config(DPOConfig, args.config, args.overrides)
        config.resume = config.resume or args.resume
        if launch_rank() == 0:
            check_model_and_deepspeed(config.model, config.deepspeed)
        with hold_run_directory(config.output_dir):
            result = train_dpo(config)
    if result.main_process:
        last: dict[str, Any] = next(
            (log for log in reversed(result.log_history) if "rewards/margins" in log), {}
        )
        print(json.dumps({"export_dir": str(result.export_dir), **last}))
    return 0


def _trl_config(config: DPOConfig) -> TRLDPOConfig:
    import torch
    from trl import DPOConfig as TRLDPOConfig

    deepspeed = config.deepspeed_path()
    return TRLDPOConfig(
        output_dir=config.output_dir,
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        gradient_checkpointing=config.gradient_checkpointing,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        deepspeed=str(deepspeed) if deepspeed else None,
        accelerator_config={"use_configured_state": _configure_cpu_deepspeed(deepspeed)},
        use_cpu=deepspeed is None and not torch.cuda.is_available(),  # transformers' condition for CPU bf16
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        report_to=["tensorboard"] if config.tensorboard else "none",
        seed=config.seed,
    )


def _check_deepspeed_precision(config: DPOConfig) -> None:
    """transformers trains bf16 or fp16 on a CPU only without DeepSpeed (its CPU mode turns DeepSpeed off):
    refuse that mix up front, naming the keys, rather than deep inside ``TrainingArguments``."""
    import torch

    if config.precision != "fp32" and not torch.cuda.is_available():
        raise ConfigError(
            f"precision={config.precision} with deepspeed={config.deepspeed} needs a GPU (transformers "
            f"trains {config.precision} on a CPU only without DeepSpeed): set precision=fp32 or "
            "deepspeed=null"
        )


def _configure_cpu_deepspeed(deepspeed: Path | None) -> bool:
    """Set up accelerate's process state for DeepSpeed ranks without GPUs; True if it did.

    transformers starts accelerate's state for DeepSpeed without a backend; without CUDA, accelerate then
    finds none and counts one process per rank, which breaks TRL's metric gathering. Starting the state first
    with ``gloo`` (what DeepSpeed's CPU accelerator uses) lets ``TrainingArguments`` take it as configured.
    """
    import torch

    if deepspeed is None or torch.cuda.is_available():
        return False
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]
    return True


def _trained_model(config: DPOConfig, final_dir: Path) -> PreTrainedModel:
    """The saved result as a plain model in the training precision; a LoRA adapter is merged into the base."""
    dtype = EXPORT_DTYPES[config.precision]
    if config.lora is None:
        model, _ = load_model_and_tokenizer(final_dir, dtype=dtype)
        return model
    base, _ = load_model_and_tokenizer(config.model, dtype=dtype)
    return merge_adapter(base, final_dir)
