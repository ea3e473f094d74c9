"""Training configuration: dataclasses read from a YAML/JSON file plus ``key=value`` command-line overrides.

:func:`load_config` is generic (SFT and DPO both use it); :class:`SFTConfig` holds the supervised fine-tuning
settings with the paper's defaults (Ji et al., 2024, appendix: lr 2e-5, 3 epochs, max length 2048, cosine
schedule with 3% warm-up, AdamW betas (0.9, 0.95), no weight decay).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml
from pydantic import ValidationError

from train.errors import TrainingInputError

__all__ = [
    "ConfigError",
    "LoRAConfig",
    "SFTConfig",
    "load_config",
    "config_to_dict",
    "resolve_deepspeed_config",
    "read_deepspeed_config",
    "check_model_and_deepspeed",
    "validation_summary",
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


class ConfigError(TrainingInputError, ValueError):
    """A config file or override is malformed: unknown key, wrong type or out-of-range value."""


@dataclass
class LoRAConfig:
    """LoRA adapter settings (``peft.LoraConfig``); the base model stays frozen."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def __post_init__(self) -> None:
        _check(self.r > 0, "lora.r must be positive")
        _check(0.0 <= self.dropout < 1.0, "lora.dropout must be in [0, 1)")
        _check(bool(self.target_modules), "lora.target_modules must not be empty")

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
class SFTConfig:
    """Supervised fine-tuning on question-answer-correction records: of an Aligner (``task="aligner"``) or of
    the upstream model on the corrections (``task="upstream"``).

    The defaults are the paper's; ``train/configs/sft-aligner.yaml`` spells them out
    (``train/configs/sft-upstream.yaml``: the upstream mode).
    """

    task: str = "aligner"
    """``"aligner"``: prompt = the Aligner template of question and answer. ``"upstream"``: prompt = the
    tokenizer's chat template of the question alone (the answer is not used); the target is the correction
    either way."""

    # Model and data
    model: str | None = None
    """A Hugging Face model directory or a ``.gguf`` file; ``None``: the embedded SmolLM2-135M-Instruct base
    (without the ``aligner-tiny`` adapter)."""
    data: list[dict[str, Any]] = field(default_factory=list)
    """Data sources, each a ``train.builders.DataSource`` spec, e.g. ``{kind: jsonl, path: data.jsonl}``."""
    template: str = "aligner-v1"
    """Prompt template name (``langchain_aligner.templates.TEMPLATES``) or a custom text (task=aligner)."""
    chat_template: str | None = None
    """A Jinja chat template that replaces the tokenizer's (``task="upstream"`` needs one; base models have
    none); it is saved with the exported model."""
    max_length: int = 2048
    identity_warmup_share: float = 0.0
    """Share of records trained first, for one epoch, as Q-A-A (the answer copied as its own correction); the
    paper found ~0.2 best. 0 turns the warm-up phase off."""
    eval_share: float = 0.0
    """Share of records held out (fixed by ``seed``) and scored after each epoch; 0 holds none out."""
    eval_each_epoch: bool = True
    """Score the held-out records (mean token loss) after each epoch; off, they are only held out."""
    max_records: int | None = None
    """Use at most this many training records (taken after the seeded shuffle); ``None`` uses all."""

    # Optimisation
    num_epochs: int = 3
    max_steps: int | None = None
    """Stop after this many optimizer steps (a budget); ``None`` trains ``num_epochs`` in full."""
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    """``"cosine"``, ``"linear"`` or ``"constant"``, each after a linear warm-up."""
    warmup_ratio: float = 0.03
    adam_betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    precision: str = "bf16"
    """``"bf16"``, ``"fp16"``, ``"fp32"`` (DeepSpeed's mixed precision or none) or ``"bf16-autocast"``: fp32
    weights and optimizer, forward passes under ``torch.autocast`` in bf16. On CPUs with native bf16
    (avx512_bf16) ``bf16-autocast`` is the fastest setting measured (train/README.md); DeepSpeed's bf16 mode
    is meant for GPUs."""
    group_by_length: bool = True
    """Batch records of similar length together (in seeded mega-batches) so padding does not dominate."""
    pad_to_multiple_of: int | None = None
    """Pad each batch to a multiple of this many tokens (few distinct shapes; on CPUs oneDNN compiles and keeps
    kernels per shape, so varied widths cost time and memory); ``None`` pads to the longest record."""

    # DeepSpeed and LoRA
    deepspeed: str | None = "ds_zero3.json"
    """A DeepSpeed JSON config: a path, or a file name in ``train/configs/`` (``ds_zero2.json``,
    ``ds_zero3.json``, ``ds_zero3_offload.json``). Batch sizes, optimizer, scheduler and precision are filled
    in from this config."""
    lora: LoRAConfig | None = None
    """LoRA settings; ``None`` trains all weights."""

    # Output
    output_dir: str = "runs/sft"
    save_steps: int = 500
    save_total_limit: int | None = 2
    """Keep at most this many checkpoints (the oldest are deleted); ``None`` keeps all."""
    logging_steps: int = 10
    tensorboard: bool = False
    resume: bool = False
    """Continue from the last checkpoint in ``output_dir`` with the same data order."""
    seed: int = 42

    def __post_init__(self) -> None:
        checks = {
            f"task must be one of {', '.join(TASKS)}": self.task in TASKS,
            "identity_warmup_share must be 0 for task=upstream (the warm-up copies the answer)": (
                self.task != "upstream" or self.identity_warmup_share == 0.0
            ),
            "max_length must be positive": self.max_length > 0,
            "identity_warmup_share must be in [0, 1)": 0.0 <= self.identity_warmup_share < 1.0,
            "eval_share must be in [0, 1)": 0.0 <= self.eval_share < 1.0,
            "max_records must be positive": self.max_records is None or self.max_records > 0,
            "num_epochs must be positive": self.num_epochs > 0,
            "max_steps must be positive": self.max_steps is None or self.max_steps > 0,
            "pad_to_multiple_of must be positive": (
                self.pad_to_multiple_of is None or self.pad_to_multiple_of > 0
            ),
            "learning_rate must be positive": self.learning_rate > 0,
            "lr_scheduler must be cosine, linear or constant": self.lr_scheduler in SCHEDULERS,
            "warmup_ratio must be in [0, 1)": 0.0 <= self.warmup_ratio < 1.0,
            "adam_betas must be two values in [0, 1)": all(0 <= b < 1 for b in self.adam_betas),
            "weight_decay must be >= 0": self.weight_decay >= 0,
            "per_device_batch_size must be positive": self.per_device_batch_size > 0,
            "gradient_accumulation_steps must be positive": self.gradient_accumulation_steps > 0,
            "precision must be 'bf16', 'fp16', 'fp32' or 'bf16-autocast'": self.precision in PRECISIONS,
            "save_steps must be positive": self.save_steps > 0,
            "logging_steps must be positive": self.logging_steps > 0,
            "save_total_limit must be positive": self.save_total_limit is None or self.save_total_limit > 0,
        }
        for message, ok in checks.items():
            _check(ok, message)

    def deepspeed_path(self) -> Path | None:
        """The DeepSpeed config file: ``deepspeed`` as a path, else as a name in ``train/configs/``."""
        return resolve_deepspeed_config(self.deepspeed)


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


def validation_summary(error: ValidationError) -> str:
    """A pydantic validation error in one line: ``location: message (got value)`` for each problem,
    ``; ``-separated."""
    problems = []
    for problem in error.errors():
        text = problem["msg"].removeprefix("Value error, ")
        value = problem.get("input")
        if problem["type"] != "missing" and not isinstance(value, (dict, list)):
            text += f" (got {value!r})"
        location = ".".join(str(part) for part in problem["loc"])
        problems.append(f"{location}: {text}" if location else text)
    return "; ".join(problems)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build the dataclass ``cls`` from a YAML or JSON file, then apply ``key=value`` overrides.

    Override values are parsed as YAML (``lr=1e-4`` is a float, ``lora=null`` is ``None``,
    ``adam_betas=[0.9,0.99]`` a list); nested fields use dots (``lora.r=8``). Unknown keys, wrong types and
    out-of-range values raise :class:`ConfigError` naming the key.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_file(Path(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: bad value: {exc}") from exc
        _set_dotted(values, key.strip().split("."), value)
    return _build(cls, values, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-serialisable data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


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
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
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


def _build(cls: type[T], values: Mapping[str, Any], prefix: str) -> T:
    if not isinstance(values, Mapping):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}" if prefix else str(exc)) from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` (the few shapes configs use), converting where lossless."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {hint}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, {} if value is None else value, prefix=key + ".")  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
        item = args[0] if args else Any
        return origin(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "2e-5" (no dot) as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value
