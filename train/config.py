"""Training configuration: dataclasses read from a YAML/JSON file plus ``key=value`` command-line overrides.

:class:`TrainingConfig` holds what every training run shares (model, optimisation, DeepSpeed and LoRA,
output), as TRL's configs share ``TrainingArguments``; :class:`SFTConfig` adds supervised fine-tuning's keys,
with the paper's defaults (Ji et al., 2024, appendix: lr 2e-5, 3 epochs, max length 2048, cosine schedule
with 3% warm-up, AdamW betas (0.9, 0.95), no weight decay); ``.dpo.DPOConfig`` adds DPO's. Each field's
``metadata`` holds its ``help`` and, where the values are a fixed set, its ``choices``: ``--help`` lists
every key from them (:func:`config_help`). :func:`load_config` validates values with pydantic: a wrong type
names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from .builders import DataSource
from .errors import ConfigError, validation_summary

__all__ = [
    "ConfigError",
    "LoRAConfig",
    "TrainingConfig",
    "SFTConfig",
    "load_config",
    "config_help",
    "config_to_dict",
    "inherited",
    "resolve_deepspeed_config",
    "read_deepspeed_config",
    "check_model_and_deepspeed",
    "check_values",
    "CONFIG_DIR",
]

CONFIG_DIR = Path(__file__).parent / "configs"
"""The shipped configs: ``sft-aligner.yaml`` (paper defaults), ``sft-tiny.yaml``, DeepSpeed JSON files."""

T = TypeVar("T")

SCHEDULERS = ("cosine", "linear", "constant")

TASKS = ("aligner", "upstream")
"""What SFT trains on Q-A-C records: the Aligner (question + answer -> correction) or the upstream model
(chat-templated question -> correction)."""

PRECISIONS = ("bf16", "fp16", "fp32", "bf16-autocast")
"""Training precisions: DeepSpeed's bf16/fp16 mixed precision, plain fp32, or fp32 weights with bf16
autocast."""


@dataclass
class LoRAConfig:
    """LoRA adapter settings (``peft.LoraConfig``); the base model stays frozen."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # how load_config validates it: unknown keys refused

    r: int = field(default=16, metadata={"help": "rank of the adapter's matrices"})
    alpha: int = field(
        default=32, metadata={"help": "scale: the adapter's update is multiplied by alpha / r"}
    )
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter's input, in [0, 1)"})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "the linear layers that get an adapter, by module name"},
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "an adapter directory whose weights start this adapter (a second training stage; SFT "
            "only): same r and target modules; null: peft's initialisation"
        },
    )

    def __post_init__(self) -> None:
        check_values(
            {
                "lora.r must be positive": self.r > 0,
                "lora.dropout must be in [0, 1)": 0.0 <= self.dropout < 1.0,
                "lora.target_modules must not be empty": bool(self.target_modules),
            }
        )

    def to_peft(self) -> Any:
        """These settings as a ``peft.LoraConfig`` for a causal LM."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


@dataclass
class TrainingConfig:
    """The settings every training run shares: the model, optimisation, DeepSpeed and LoRA, output.

    The defaults are SFT's (the paper's); a subclass sets its own with :func:`inherited`.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # how load_config validates it: unknown keys refused

    # Model
    model: str | None = field(
        default=None,
        metadata={
            "help": "a Hugging Face model directory or a .gguf file; null: the embedded "
            "SmolLM2-135M-Instruct base (SFT; DPO needs a model)"
        },
    )
    chat_template: str | None = field(
        default=None,
        metadata={
            "help": "a Jinja chat template that replaces the tokenizer's (base models have none); saved "
            "with the export"
        },
    )

    # Optimisation
    num_epochs: int = field(default=3, metadata={"help": "passes over the training data"})
    max_steps: int | None = field(
        default=None, metadata={"help": "stop after this many optimizer steps; null: num_epochs in full"}
    )
    learning_rate: float = field(default=2e-5, metadata={"help": "peak learning rate (AdamW)"})
    lr_scheduler: str = field(
        default="cosine",
        metadata={"help": "learning rate schedule after the linear warm-up", "choices": SCHEDULERS},
    )
    warmup_ratio: float = field(
        default=0.03, metadata={"help": "share of the steps in linear warm-up, in [0, 1)"}
    )
    per_device_batch_size: int = field(default=4, metadata={"help": "records per rank and micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass: less memory, slower"}
    )
    precision: str = field(
        default="bf16",
        metadata={
            "help": "DeepSpeed's bf16/fp16 mixed precision, plain fp32, or bf16-autocast (SFT only): fp32 "
            "weights, forward passes autocast to bf16, the fastest on CPUs with native bf16",
            "choices": PRECISIONS,
        },
    )

    # DeepSpeed and LoRA
    deepspeed: str | None = field(
        default="ds_zero3.json",
        metadata={
            "help": "a DeepSpeed JSON config: a path or a file in train/configs/ (ds_zero2.json, "
            "ds_zero3.json, ds_zero3_offload.json); its 'auto' entries are filled from this config; "
            "null: none"
        },
    )
    lora: LoRAConfig | None = field(
        default=None,
        metadata={"help": "LoRA adapter settings, e.g. {r: 16, alpha: 32}; null: train all weights"},
    )

    # Output
    output_dir: str = field(default="runs/sft", metadata={"help": "checkpoints, logs and the export"})
    save_steps: int = field(default=500, metadata={"help": "save a checkpoint every this many steps"})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "keep at most this many checkpoints (the oldest go); null: keep all"}
    )
    logging_steps: int = field(default=10, metadata={"help": "log the loss every this many steps"})
    tensorboard: bool = field(
        default=False, metadata={"help": "also log to TensorBoard (output_dir/tensorboard)"}
    )
    resume: bool = field(
        default=False,
        metadata={"help": "continue from the last checkpoint in output_dir, with the same data order"},
    )
    seed: int = field(
        default=42, metadata={"help": "seed of the data order, held-out split, LoRA init, dropout"}
    )

    def __post_init__(self) -> None:
        for key in dataclasses.fields(self):
            choices = key.metadata.get("choices")
            value = getattr(self, key.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"{key.name} must be one of {', '.join(choices)}; got {value!r}")
        check_values(
            {
                "num_epochs must be positive": self.num_epochs > 0,
                "max_steps must be positive": self.max_steps is None or self.max_steps > 0,
                "learning_rate must be positive": self.learning_rate > 0,
                "warmup_ratio must be in [0, 1)": 0.0 <= self.warmup_ratio < 1.0,
                "per_device_batch_size must be positive": self.per_device_batch_size > 0,
                "gradient_accumulation_steps must be positive": self.gradient_accumulation_steps > 0,
                "save_steps must be positive": self.save_steps > 0,
                "logging_steps must be positive": self.logging_steps > 0,
                "save_total_limit must be positive": self.save_total_limit is None
                or self.save_total_limit > 0,
            }
        )

    def deepspeed_path(self) -> Path | None:
        """The DeepSpeed config file: ``deepspeed`` as a path, else as a name in ``train/configs/``."""
        return resolve_deepspeed_config(self.deepspeed)


def inherited(name: str, default: Any) -> Any:
    """A subclass's own ``default`` for :class:`TrainingConfig`'s field ``name``, keeping its help and
    choices."""
    metadata = {key.name: key.metadata for key in dataclasses.fields(TrainingConfig)}[name]
    return field(default=default, metadata=metadata)


@dataclass
class SFTConfig(TrainingConfig):
    """Supervised fine-tuning on question-answer-correction records: of an Aligner (``task="aligner"``) or of
    the upstream model on the corrections (``task="upstream"``).

    The defaults are the paper's; ``train/configs/sft-aligner.yaml`` spells them out
    (``train/configs/sft-upstream.yaml``: the upstream mode).
    """

    task: str = field(
        default="aligner",
        metadata={
            "help": "aligner: prompt = the Aligner template of question and answer; upstream: prompt = the "
            "tokenizer's chat template of the question alone; the target is the correction either way",
            "choices": TASKS,
        },
    )
    data: list[DataSource] = field(
        default_factory=list,
        metadata={
            "help": "data sources (DataSource specs, each checked as the config loads), e.g. "
            "[{kind: jsonl, path: qac.jsonl}]"
        },
    )
    template: str = field(
        default="aligner-v1",
        metadata={
            "help": "prompt template: a name in langchain_aligner.templates.TEMPLATES or a custom text"
        },
    )
    max_length: int = field(
        default=2048, metadata={"help": "tokens of prompt and correction; longer are cut"}
    )
    identity_warmup_share: float = field(
        default=0.0,
        metadata={
            "help": "share of records trained first, for one epoch, as Q-A-A (the answer as its own "
            "correction); the paper found ~0.2 best; 0: no warm-up"
        },
    )
    eval_share: float = field(
        default=0.0, metadata={"help": "share of records held out (drawn with seed), scored after each epoch"}
    )
    eval_each_epoch: bool = field(
        default=True,
        metadata={"help": "score the held-out records after each epoch; off: only hold them out"},
    )
    max_records: int | None = field(
        default=None, metadata={"help": "train on at most this many records (after the seeded shuffle)"}
    )
    adam_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamW's betas"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW's weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients to this norm"})
    group_by_length: bool = field(
        default=True,
        metadata={"help": "batch records of similar length together (in seeded mega-batches): less padding"},
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={
            "help": "pad each batch to a multiple of this many tokens (few distinct shapes: on CPUs oneDNN "
            "compiles and keeps kernels per shape); null: pad to the longest record"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_values(
            {
                "identity_warmup_share must be 0 for task=upstream (the warm-up copies the answer)": (
                    self.task != "upstream" or self.identity_warmup_share == 0.0
                ),
                "max_length must be positive": self.max_length > 0,
                "identity_warmup_share must be in [0, 1)": 0.0 <= self.identity_warmup_share < 1.0,
                "eval_share must be in [0, 1)": 0.0 <= self.eval_share < 1.0,
                "max_records must be positive": self.max_records is None or self.max_records > 0,
                "pad_to_multiple_of must be positive": (
                    self.pad_to_multiple_of is None or self.pad_to_multiple_of > 0
                ),
                "adam_betas must be two values in [0, 1)": all(0 <= b < 1 for b in self.adam_betas),
                "weight_decay must be >= 0": self.weight_decay >= 0,
            }
        )


def resolve_deepspeed_config(name: str | None) -> Path | None:
    """A DeepSpeed config given as a path, else as a file name in ``train/configs/``; ``None`` for none."""
    if name is None:
        return None
    for path in (Path(name), CONFIG_DIR / name):
        if path.is_file():
            return path
    raise ConfigError(f"deepspeed config not found: {name}")


def read_deepspeed_config(name: str | None) -> dict[str, Any] | None:
    """The DeepSpeed config ``name`` (see :func:`resolve_deepspeed_config`) as a mapping; ``None`` for none.

    Raises:
        ConfigError: The file does not exist or is not a JSON object; the message names the file and line.
    """
    path = resolve_deepspeed_config(name)
    if path is None:
        return None
    try:
        ds = json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise ConfigError(f"deepspeed config {path}:{error.lineno}: not valid JSON: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"deepspeed config {path}: not UTF-8 text ({error.reason})") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"deepspeed config {path}: expected a JSON object, got {type(ds).__name__}")
    return ds


def check_model_and_deepspeed(model: str | Path | None, deepspeed: str | None) -> None:
    """Fail fast, before any data is read or model loaded: ``model`` (``None``: the embedded one) is a model
    directory or a ``.gguf`` file and the DeepSpeed config reads as JSON.

    Raises:
        ConfigError: Naming the key (``model`` or ``deepspeed``) and the path.
    """
    from langchain_aligner.models import check_model_path

    if model is not None:
        try:
            check_model_path(model)
        except FileNotFoundError as error:
            raise ConfigError(f"model: {error}") from None
    read_deepspeed_config(deepspeed)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build the config dataclass ``cls`` from a YAML or JSON file, then apply ``key=value`` overrides.

    Override values are parsed as YAML (``lr=1e-4`` is a float, ``lora=null`` is ``None``,
    ``adam_betas=[0.9,0.99]`` a list); nested fields use dots (``lora.r=8``). The values are validated by
    pydantic against the dataclass's types, strictly (``1`` is no ``bool``, ``"3"`` no ``int``; an ``int``
    is a ``float``), then by its own checks.

    Raises:
        ConfigError: One line: an unknown key, or the key, the expected type and the value that does not
            fit, or an out-of-range value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_file(Path(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.load(raw, Loader=_YAMLLoader) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: bad value: {' '.join(str(exc).split())}") from None
        _set_dotted(values, key.strip().split("."), value)
    known = [key.name for key in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
    try:
        # JSON mode: strict types, yet a list is a tuple and a mapping a nested dataclass, as in the file.
        return TypeAdapter(cls).validate_json(json.dumps(values, default=str), strict=True)
    except ValidationError as error:
        raise ConfigError(validation_summary(error)) from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-serialisable data (tuples become lists)."""
    return TypeAdapter(type(config)).dump_python(config, mode="json")


def config_help(cls: type) -> str:
    """Every key of the config dataclass ``cls`` (nested ones as ``lora.r``) with its meaning, its allowed
    values and its default, for ``--help``."""
    lines = ["config keys (in the --config file, or key=value; defaults in brackets):"]
    hints = typing.get_type_hints(cls)
    for key in dataclasses.fields(cls):
        lines += _key_help(key, "")
        nested = [t for t in typing.get_args(hints[key.name]) if dataclasses.is_dataclass(t)]
        for inner in dataclasses.fields(nested[0]) if nested else ():
            lines += _key_help(inner, f"{key.name}.")
    return "\n".join(lines)


def _key_help(key: dataclasses.Field[Any], prefix: str) -> list[str]:
    default = key.default_factory() if key.default_factory is not dataclasses.MISSING else key.default
    text = key.metadata.get("help", "")
    if "choices" in key.metadata:
        text += f" (one of: {', '.join(key.metadata['choices'])})"
    head = f"  {prefix}{key.name} [{json.dumps(default)}]"
    return textwrap.wrap(
        text,
        width=108,
        initial_indent=f"{head}: ",
        subsequent_indent=" " * 6,
        break_long_words=False,
        break_on_hyphens=False,
    )


def check_values(checks: dict[str, bool]) -> None:
    """Raise :class:`ConfigError` with the message of the first check that fails."""
    for message, ok in checks.items():
        if not ok:
            raise ConfigError(message)


class _YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``2e-5`` (an exponent, no dot) as a float, as YAML 1.2 does;
    PyYAML's YAML 1.1 rules read it as a string."""


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({error.reason})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_YAMLLoader)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _set_dotted(values: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = values.get(key)
        if not isinstance(child, dict):
            child = values[key] = {}
        values = child
    values[keys[-1]] = value
