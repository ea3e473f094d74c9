"""The supervised fine-tuning loop on ``deepspeed.initialize``: ZeRO-2/3, resumable, length-grouped.

One optimizer step trains the micro-batches that :func:`.batching.plan_training` planned for it. The
loss is the mean over the correction tokens of the whole global batch (all ranks, all accumulated
micro-batches): every rank knows the plan, so it divides its summed token losses by the global token count
and scales by the world size (DeepSpeed averages gradients over ranks) without any extra communication.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .batching import (
    IGNORE_INDEX,
    Phase,
    PlannedStep,
    pad_collate,
    plan_epoch,
    plan_training,
)
from .config import SFTConfig, config_to_dict, read_deepspeed_config

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "init_distributed",
    "standalone_world",
    "silence_known_warnings",
    "deepspeed_config",
    "SFTTrainer",
    "TrainResult",
    "LOSS_LOG",
    "CHECKPOINT_DIR",
]

logger = logging.getLogger(__name__)

LOSS_LOG = "loss_log.jsonl"
"""Loss log in ``output_dir``: one JSON line per ``logging_steps`` (and one per evaluation)."""
CHECKPOINT_DIR = "checkpoints"
"""DeepSpeed checkpoints in ``output_dir``, one ``step-N`` tag each."""


@dataclass(frozen=True)
class TrainResult:
    """What a run did: steps taken (in total, including a resumed run's earlier ones) and the last loss."""

    steps: int
    last_loss: float | None


def silence_known_warnings() -> None:
    """Ignore the deprecation warnings DeepSpeed's ZeRO collectives set off on every optimizer step.

    DeepSpeed calls ``torch.distributed.reduce_scatter_tensor`` and ``all_gather_into_tensor``, which torch
    deprecates in favour of ``*_single`` (the same operation): a FutureWarning each call, two or more per
    step, between the progress bar's updates. Only these two messages, from ``torch.distributed``, are
    ignored.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated",
        category=FutureWarning,
        module=r"torch\.distributed\.",
    )


def standalone_world() -> None:
    """Outside a launcher (no ``RANK`` in the environment), describe a world of one process on 127.0.0.1 (a
    free port) in the environment, where ``torch.distributed``, DeepSpeed and accelerate read it."""
    if "RANK" in os.environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))


def init_distributed() -> tuple[int, int]:
    """Initialise ``torch.distributed`` through DeepSpeed and return ``(rank, world_size)``.

    Under a launcher (``deepspeed``, ``torchrun``) the environment names the ranks; a plain ``python -m
    train`` run becomes a world of one on 127.0.0.1. The known, harmless warnings of DeepSpeed's collectives
    are silenced (:func:`silence_known_warnings`).
    """
    import deepspeed

    silence_known_warnings()
    standalone_world()
    deepspeed.init_distributed()
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def deepspeed_config(config: SFTConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config: ``config.deepspeed`` (or plain ZeRO-0) with batch sizes, clipping, precision and
    the AdamW optimizer filled in from ``config`` (values the file sets to ``"auto"`` or leaves out)."""
    ds = read_deepspeed_config(config.deepspeed) or {"zero_optimization": {"stage": 0}}
    filled = {
        "train_micro_batch_size_per_gpu": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "train_batch_size": config.per_device_batch_size * config.gradient_accumulation_steps * world_size,
        "gradient_clipping": config.max_grad_norm,
    }
    for key, value in filled.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    ds.setdefault("bf16", {})["enabled"] = config.precision == "bf16"
    ds.setdefault("fp16", {})["enabled"] = config.precision == "fp16"
    ds.setdefault(
        "optimizer",
        {
            "type": "AdamW",
            "params": {
                "lr": config.learning_rate,
                "betas": list(config.adam_betas),
                "eps": 1e-8,
                "weight_decay": config.weight_decay,
            },
        },
    )
    return ds


class SFTTrainer:
    """Trains ``model`` on records encoded by :func:`.tokenization.encode_records`.

    Args:
        config: The run's settings.
        model: A causal LM (LoRA already applied, if wanted).
        tokenizer: Its tokenizer (for the pad id and the export); it must have a pad token.
        dataset: Encoded records; ``phases`` index into it (e.g. identity warm-up records, then main records).
        phases: What to train, in order.
        eval_dataset: Held-out encoded records, scored after each epoch; ``None`` for none.
    """

    def __init__(
        self,
        config: SFTConfig,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        dataset: Dataset,
        phases: Sequence[Phase],
        eval_dataset: Dataset | None = None,
    ) -> None:
        import deepspeed
        from transformers import get_scheduler

        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: batches are padded with it")
        self.config = config
        self.tokenizer = tokenizer
        self.pad_token_id: int = tokenizer.pad_token_id
        self.dataset = dataset
        self.eval_dataset = eval_dataset
        self.rank, self.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.output_dir = Path(config.output_dir)
        self.lora = config.lora is not None
        self.lengths: list[int] = list(dataset["length"])
        self.targets: list[int] = [
            sum(1 for t in labels[1:] if t != IGNORE_INDEX) for labels in dataset["labels"]
        ]
        self.plan: list[PlannedStep] = plan_training(
            phases,
            self.lengths,
            batch_size=config.per_device_batch_size,
            world_size=self.world_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            seed=config.seed,
            group_by_length=config.group_by_length,
            max_steps=config.max_steps,
        )
        if not self.plan:
            raise ValueError("nothing to train: the dataset is empty")
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.ds_config = deepspeed_config(config, self.world_size)
        params = [p for p in model.parameters() if p.requires_grad]
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=params,
            config=self.ds_config,
            # Given to DeepSpeed, the scheduler steps with the optimizer and is saved in its checkpoints.
            lr_scheduler=lambda optimizer: get_scheduler(
                config.lr_scheduler,
                optimizer,
                num_warmup_steps=round(config.warmup_ratio * len(self.plan)),
                num_training_steps=len(self.plan),
            ),
        )
        self.step = 0

    # Checkpoints -------------------------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        """Where DeepSpeed checkpoints go."""
        return self.output_dir / CHECKPOINT_DIR

    def save_checkpoint(self) -> None:
        """Save the engine (weights, optimizer, scheduler), the step and this rank's RNG state."""
        tag = f"step-{self.step}"
        state = {"step": self.step, "plan_length": len(self.plan), "config": config_to_dict(self.config)}
        # Before the engine's save, which names the tag `latest` last: a `latest` tag has every RNG state.
        (self.checkpoint_dir / tag).mkdir(parents=True, exist_ok=True)
        torch.save(_rng_state(), self._rng_file(tag))
        # A LoRA run's frozen base is the model it started from: leave it out of the checkpoints.
        self.engine.save_checkpoint(
            str(self.checkpoint_dir), tag=tag, client_state=state, exclude_frozen_parameters=self.lora
        )
        torch.distributed.barrier()
        if self.rank == 0 and self.config.save_total_limit is not None:
            tags = sorted(self.checkpoint_dir.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in tags[: -self.config.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        torch.distributed.barrier()

    def resume(self) -> bool:
        """Load the latest checkpoint in ``output_dir``, if any; training then continues after its step."""
        latest = self.checkpoint_dir / "latest"
        if not latest.is_file():
            return False
        tag = latest.read_text().strip()
        path, state = self.engine.load_checkpoint(
            str(self.checkpoint_dir), tag=tag, load_module_strict=not self.lora
        )
        if path is None:
            raise RuntimeError(f"cannot load the latest checkpoint in {self.checkpoint_dir}")
        if state["plan_length"] != len(self.plan):
            raise ValueError(
                f"checkpoint {path} was made for a plan of {state['plan_length']} steps, this run plans "
                f"{len(self.plan)}: the data or batch settings changed, so the data order cannot be continued"
            )
        self.step = int(state["step"])
        rng = self._rng_file(tag)
        if not rng.is_file():
            raise FileNotFoundError(f"{rng} is missing: without it, dropout would not continue as it was")
        _set_rng_state(torch.load(rng))
        logger.info("resumed from %s at step %d", path, self.step)
        return True

    def _rng_file(self, tag: str) -> Path:
        """This rank's RNG states in checkpoint ``tag`` (dropout draws from them)."""
        return self.checkpoint_dir / tag / f"rng_state_{self.rank}.pt"

    # Training ----------------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run the remaining planned steps; log, checkpoint every ``save_steps``, save the last state."""
        from tqdm.auto import tqdm

        if self.config.resume:
            self.resume()
        self.engine.train()
        # A fresh run starts a new log; a resumed one appends (its lines for redone steps come last).
        log = _LossLog(self.output_dir, self.config.tensorboard, self.step > 0) if self.rank == 0 else None
        bar = tqdm(
            total=len(self.plan), initial=self.step, desc="sft", disable=self.rank != 0, dynamic_ncols=True
        )
        window = _Window()
        last_loss: float | None = None
        try:
            for planned in self.plan[self.step :]:
                window.add(
                    self._train_step(planned), planned, sum(self.targets[i] for i in planned.indices())
                )
                self.step += 1
                bar.update(1)
                last_epoch = self.step == len(self.plan) or self.plan[self.step].epoch != planned.epoch
                if self.step % self.config.logging_steps == 0 or last_epoch:
                    last_loss = self._log(window, planned, log, bar)
                    window = _Window()
                if last_epoch and self.eval_dataset is not None and len(self.eval_dataset):
                    eval_loss = self.evaluate()
                    if log is not None:
                        log.write({"step": self.step, "epoch": planned.epoch, "eval_loss": eval_loss})
                if self.step % self.config.save_steps == 0 or self.step == len(self.plan):
                    self.save_checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return TrainResult(self.step, last_loss)

    def _train_step(self, planned: PlannedStep) -> tuple[torch.Tensor, int, int, float]:
        """One optimizer step; returns this rank's summed token loss, its real tokens and token slots (real
        plus padding), and the learning rate the step used."""
        micro_batches = planned.for_rank(self.rank)
        step_targets = sum(self.targets[i] for i in planned.indices())
        loss_sum = torch.zeros(())
        tokens, slots = 0, 0
        for m, indices in enumerate(micro_batches):
            batch = pad_collate(
                [self.dataset[i] for i in indices],
                self.pad_token_id,
                self.config.pad_to_multiple_of,
            )
            self.engine.set_gradient_accumulation_boundary(m == len(micro_batches) - 1)
            summed = self._summed_loss(batch)
            # Mean over the global batch's target tokens; DeepSpeed divides by the world size, so undo that.
            self.engine.backward(summed * self.world_size / max(step_targets, 1), scale_wrt_gas=False)
            loss_sum += summed.detach().float()
            tokens += int(batch["attention_mask"].sum())
            slots += batch["attention_mask"].numel()
        lr = float(self.scheduler.get_last_lr()[0])
        self.engine.step()
        return loss_sum, tokens, slots, lr

    def _summed_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed cross-entropy over the batch's target tokens (labels != -100, shifted by one)."""
        return self._row_losses(batch).sum()

    def _row_losses(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each row's summed cross-entropy over its target tokens (labels != -100, shifted by one)."""
        device = self.engine.device
        inputs = {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}
        autocast = self.config.precision == "bf16-autocast"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = self.engine(**inputs).logits[:, :-1]
        labels = batch["labels"][:, 1:].to(device)
        keep = labels != IGNORE_INDEX
        losses = torch.zeros(labels.shape, dtype=torch.float32, device=device)
        losses[keep] = F.cross_entropy(logits[keep].float(), labels[keep], reduction="none")
        return losses.sum(dim=1)

    def _log(self, window: _Window, planned: PlannedStep, log: _LossLog | None, bar: Any) -> float:
        totals = torch.tensor([window.loss, window.tokens, window.slots], dtype=torch.float64)
        torch.distributed.all_reduce(totals)
        loss_sum, tokens, slots = totals.tolist()
        loss = loss_sum / max(window.targets, 1)
        record = {
            "step": self.step,
            "epoch": planned.epoch,
            "phase": planned.phase,
            "loss": round(loss, 6),
            "lr": window.lr,
            "tokens_per_s": round(tokens / max(time.perf_counter() - window.start, 1e-9), 1),
            "padding_share": round(1.0 - tokens / max(slots, 1), 4),
            "records": window.records,
        }
        if log is not None:
            log.write(record)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}")
        return loss

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean token loss over ``eval_dataset`` (each rank scores its share; the sums are all-reduced)."""
        eval_dataset = self.eval_dataset
        if eval_dataset is None:
            raise ValueError("no eval_dataset to evaluate on")
        self.engine.eval()
        count = len(eval_dataset)
        size = self.config.per_device_batch_size
        batches = plan_epoch(
            range(count),
            list(eval_dataset["length"]),
            batch_size=size,
            world_size=self.world_size,
            seed=self.config.seed,
            epoch=0,
            group_by_length=False,
        )
        totals = torch.zeros(2, dtype=torch.float64)
        for b, per_rank in enumerate(batches):
            indices = per_rank[self.rank]
            batch = pad_collate([eval_dataset[i] for i in indices], self.pad_token_id)
            # Without length grouping, the records repeated to fill the last batch sit at the end: skip them.
            first = (b * self.world_size + self.rank) * size
            fresh = torch.tensor([first + j < count for j in range(len(indices))])
            targets = (batch["labels"][:, 1:] != IGNORE_INDEX).sum(dim=1)
            totals += torch.stack([self._row_losses(batch).cpu()[fresh].sum(), targets[fresh].sum()]).double()
        torch.distributed.all_reduce(totals)
        self.engine.train()
        return float(totals[0] / max(float(totals[1]), 1.0))

    # Export ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def full_weights(self) -> Iterator[Any]:
        """The trained module with its full weights on every rank (gathered under ZeRO-3)."""
        import deepspeed

        module: Any = self.engine.module
        if self.engine.zero_optimization_stage() == 3:
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                yield module
        else:
            yield module

    def export(self, directory: str | Path | None = None) -> Path:
        """Write the trained model in the TGI layout (``output_dir/model``); LoRA runs also write the adapter
        (``output_dir/adapter``) and export the merged model. Returns the model directory."""
        from langchain_aligner.models import export_model

        target = Path(directory) if directory is not None else self.output_dir / "model"
        module: Any
        with self.full_weights() as module:
            if hasattr(module, "merge_and_unload"):
                if self.rank == 0:
                    module.save_pretrained(self.output_dir / "adapter", safe_serialization=True)
                module = module.merge_and_unload()
            module.config.use_cache = True
            if self.rank == 0:
                export_model(module, self.tokenizer, target)
        torch.distributed.barrier()
        return target


def _rng_state() -> dict[str, torch.Tensor]:
    """The CPU's and the accelerator's (e.g. CUDA's) RNG states of this process."""
    from deepspeed.accelerator import get_accelerator

    return {"cpu": torch.get_rng_state(), "accelerator": get_accelerator().get_rng_state()}


def _set_rng_state(state: dict[str, torch.Tensor] | torch.Tensor) -> None:
    """Restore what :func:`_rng_state` returned (or a bare CPU state, as earlier checkpoints hold)."""
    from deepspeed.accelerator import get_accelerator

    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    get_accelerator().set_rng_state(state["accelerator"])
    torch.set_rng_state(state["cpu"])


@dataclass
class _Window:
    """Sums over the steps since the last log line (this rank's losses and tokens; global targets)."""

    loss: float = 0.0
    tokens: int = 0
    slots: int = 0
    targets: int = 0
    start: float = field(default_factory=time.perf_counter)
    records: list[int] = field(default_factory=list)
    lr: float = 0.0

    def add(self, result: tuple[torch.Tensor, int, int, float], planned: PlannedStep, targets: int) -> None:
        loss, tokens, slots, self.lr = result
        self.loss += float(loss)
        self.tokens += tokens
        self.slots += slots
        self.targets += targets
        self.records += planned.indices()


class _LossLog:
    """Appends JSON lines to ``output_dir/loss_log.jsonl`` and, optionally, scalars to TensorBoard."""

    def __init__(self, output_dir: Path, tensorboard: bool, append: bool) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        self.file = (output_dir / LOSS_LOG).open("a" if append else "w", encoding="utf-8")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "tensorboard=true needs the tensorboard package: pip install tensorboard"
                ) from exc
            self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
