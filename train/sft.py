"""``langchain-aligner train sft --config CONFIG.yaml [--resume] [key=value ...]``: fine-tune on Q-A-C data.

Loads the config (file, then overrides), the model (LoRA applied if configured) and the data sources, holds
out ``eval_share`` of the records, splits off the identity warm-up records, tokenizes everything with the
inference template, trains (warm-up phase, then main phase) and exports to ``output_dir/model``.
With ``task=upstream`` the same Q-A-C records fine-tune the upstream model instead: the prompt is its chat
template of the question (``chat_template`` sets one), the target the correction (``sft-upstream.yaml``).
The same command runs under ``deepspeed --num_gpus N --module langchain_aligner_train sft ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_aligner.records import QACRecord

from .batching import Phase
from .cli import PROG as TRAIN_PROG
from .cli import report_input_errors
from .config import (
    ConfigError,
    LoRAConfig,
    SFTConfig,
    check_model_and_deepspeed,
    config_help,
    config_to_dict,
    load_config,
)
from .run_lock import hold_run_directory, launch_rank

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = ["main", "parse_args", "load_records", "split_records", "identity_warmup", "apply_lora"]

logger = logging.getLogger(__name__)

PROG = f"{TRAIN_PROG} sft"


def parse_args(argv: Sequence[str] | None = None) -> tuple[SFTConfig, argparse.Namespace]:
    """Parse ``--config``, ``--resume``, ``--export-checkpoint`` and ``key=value`` overrides.

    Raises:
        ConfigError: A bad config file or override, naming the key.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0],
        epilog=config_help(SFTConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML or JSON config (train/configs/sft-aligner.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--export-checkpoint",
        action="store_true",
        help="export the last checkpoint as it is (model, and adapter for LoRA) without training further",
    )
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # the launcher's
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lora.r=8")
    args = parser.parse_args(argv)
    config = load_config(SFTConfig, args.config, args.overrides)
    if args.resume or args.export_checkpoint:
        config.resume = True
    return config, args


def check_data_sources(config: SFTConfig) -> None:
    """Check every data source spec, before any heavy work (no data is read).

    Raises:
        ConfigError: No sources, or a bad spec (naming it).
    """
    from .builders import data_sources

    if not config.data:
        raise ConfigError(
            "data: no data sources; set a list of them, e.g. data='[{kind: jsonl, path: qac.jsonl}]'"
        )
    data_sources(config.data)


def check_init_adapter(config: SFTConfig) -> None:
    """Fail fast if ``lora.init_from`` is set and is not an adapter directory.

    Raises:
        ConfigError: Naming the key and the path.
    """
    from langchain_aligner.models import check_adapter_dir

    if config.lora is not None and config.lora.init_from is not None:
        try:
            check_adapter_dir(config.lora.init_from)
        except FileNotFoundError as error:
            raise ConfigError(f"lora.init_from: {error}") from None


def load_records(config: SFTConfig) -> list[QACRecord]:
    """Every record of the configured data sources, in order."""
    from .builders import build_dataset

    check_data_sources(config)
    return list(build_dataset(config.data))


def split_records(
    records: Sequence[QACRecord], config: SFTConfig
) -> tuple[list[QACRecord], list[QACRecord], list[QACRecord]]:
    """``(warm-up Q-A-A, main Q-A-C, held-out)`` records: the held-out share and ``max_records`` are drawn
    with ``seed``, then ``identity_warmup_share`` of the training records become warm-up records."""
    order = list(range(len(records)))
    random.Random(config.seed).shuffle(order)
    held = round(config.eval_share * len(records))
    train_ids = sorted(order[held:][: config.max_records])
    held_out = [records[i] for i in sorted(order[:held])]
    warmup, main = identity_warmup(
        [records[i] for i in train_ids], config.identity_warmup_share, seed=config.seed
    )
    return warmup, main, held_out


def identity_warmup(
    records: Sequence[QACRecord], share: float, *, seed: int, keep_all: bool = False
) -> tuple[list[QACRecord], list[QACRecord]]:
    """Split records for an identity warm-up: ``(warm-up Q-A-A records, main Q-A-C records)``.

    A ``share`` of the records, drawn at random (deterministic for a given ``seed``), becomes Q-A-A records
    whose correction is the answer itself: trained first, they teach the Aligner to copy an answer before
    it learns to correct one (the paper found a share of about 20% best). The main records are the others,
    or all records with ``keep_all=True``. Both lists keep the input order.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    chosen = set(random.Random(seed).sample(range(len(records)), round(share * len(records))))
    warmup = [records[i].model_copy(update={"correction": records[i].answer}) for i in sorted(chosen)]
    main = [r for i, r in enumerate(records) if keep_all or i not in chosen]
    return warmup, main


def apply_lora(model: PreTrainedModel, config: SFTConfig) -> PreTrainedModel | PeftModel:
    """Wrap ``model`` with a LoRA adapter (``peft``) when ``config.lora`` is set, its weights read from
    ``lora.init_from`` when that is set; otherwise return ``model``."""
    if config.lora is None:
        return model
    from peft import get_peft_model

    adapted = get_peft_model(model, config.lora.to_peft())
    if config.lora.init_from is not None:
        load_adapter_weights(adapted, Path(config.lora.init_from), config.lora)
    return adapted


def load_adapter_weights(model: PeftModel, adapter_dir: Path, lora: LoRAConfig) -> None:
    """Set the LoRA weights of the peft ``model`` to those saved in ``adapter_dir`` (same rank and modules).

    Raises:
        ConfigError: The saved adapter's rank or target modules differ from ``lora``'s.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from langchain_aligner.models import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    saved = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    if saved.get("r") != lora.r or set(saved.get("target_modules") or ()) != set(lora.target_modules):
        raise ConfigError(
            f"lora.init_from: {adapter_dir} has r={saved.get('r')}, target_modules="
            f"{sorted(saved.get('target_modules') or ())}; this run's lora has r={lora.r}, "
            f"target_modules={sorted(lora.target_modules)}"
        )
    result: Any = set_peft_model_state_dict(model, load_file(adapter_dir / ADAPTER_WEIGHTS))
    missing = [key for key in result.missing_keys if "lora_" in key]
    if missing:
        raise ConfigError(f"lora.init_from: {adapter_dir} lacks {len(missing)} weights, e.g. {missing[0]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run supervised fine-tuning; returns the process exit status.

    Bad input fails before any heavy work: rank 0 checks the model path and the DeepSpeed config before the
    data is read, and takes the run directory's lock (a live run there is refused). Bad input (config, data
    record, paths) is reported in one line naming the file and line or the key, with exit status 2.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with report_input_errors(PROG):
        config, args = parse_args(argv)
        check_data_sources(config)
        if launch_rank() == 0:
            check_model_and_deepspeed(config.model, config.deepspeed)
            check_init_adapter(config)
        with hold_run_directory(config.output_dir):
            return _train(config, args)


def _train(config: SFTConfig, args: argparse.Namespace) -> int:
    from transformers import set_seed

    from langchain_aligner.models import default_model_dir, load_model_and_tokenizer

    from .tokenization import encode_records
    from .trainer import SFTTrainer, init_distributed

    rank, world_size = init_distributed()
    set_seed(config.seed)  # LoRA's initial weights and dropout: the same run for the same seed
    warmup, main_records, held_out = split_records(load_records(config), config)
    # No model named: the embedded SmolLM2 base, without the adapter a previous `make aligner-tiny` merged in.
    model, tokenizer = load_model_and_tokenizer(config.model or default_model_dir(adapter_dir=None))
    if config.chat_template is not None:
        tokenizer.chat_template = config.chat_template  # as train dpo does; saved with the export
    model.train()
    trained = apply_lora(model, config)

    def encode(records: Sequence[QACRecord]) -> Dataset:
        return encode_records(
            records, tokenizer, template=config.template, max_length=config.max_length, task=config.task
        )

    dataset = encode(warmup + main_records)
    phases = [
        Phase("warmup", range(len(warmup)), epochs=1),
        Phase("main", range(len(warmup), len(dataset)), epochs=config.num_epochs),
    ]
    if rank == 0:
        (Path(config.output_dir) / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
        logger.info(
            "%d warm-up, %d main, %d held-out records; %d rank(s)",
            len(warmup),
            len(main_records),
            len(held_out),
            world_size,
        )
    scored = encode(held_out) if held_out and config.eval_each_epoch else None
    trainer = SFTTrainer(config, trained, tokenizer, dataset, phases, scored)
    if args.export_checkpoint:
        if not trainer.resume():
            raise SystemExit(f"no checkpoint to export in {config.output_dir}")
        model_dir = trainer.export()
        if rank == 0:
            logger.info(
                "exported the step-%d checkpoint (of %d steps) to %s",
                trainer.step,
                len(trainer.plan),
                model_dir,
            )
        return 0
    result = trainer.train()
    model_dir = trainer.export()
    if rank == 0:
        logger.info("trained %d steps (last loss %s); model in %s", result.steps, result.last_loss, model_dir)
    return 0
