"""Training runs in tests: synthetic Q-A-C data, the ``train sft`` command (under the DeepSpeed launcher or
alone), its loss log and checkpoints, and runs that halt at a known checkpoint to be killed there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from langchain_aligner.testing import cli_command
from langchain_aligner_train.cli import PACKAGE
from langchain_aligner_train.config import CONFIG_DIR
from langchain_aligner_train.trainer import LOSS_LOG
from tests.helpers.paths import REPOSITORY

HALTING_MODULE = "tests.helpers.halting_train"
"""``python -m`` this: ``train sft|dpo`` with ranks that halt after a given checkpoint."""

TOPICS = [
    "tea",
    "rain",
    "maps",
    "bread",
    "music",
    "stone",
    "rivers",
    "glass",
    "paper",
    "gardens",
    "snow",
    "clocks",
]


def write_qac(path: Path, count: int = 40) -> Path:
    """Write ``count`` synthetic Q-A-C records: a curt answer, a polite fixed-pattern correction."""
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "question": f"Tell me about {topic}." + " Please." * (i % 4),
                "answer": f"No. {topic} is dull.",
                "correction": f"Sure! {topic.capitalize()} is interesting, and here is why."
                + " Yes." * (i % 5),
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def launcher_command(
    model_dir: Path, data: Path, output: Path, *overrides: str, ranks: int = 2
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``train sft`` with the tiny config: under the DeepSpeed launcher with
    ``ranks`` CPU ranks, or as a plain ``langchain-aligner train`` process for ``ranks=1``."""
    args = [
        "sft",
        "--config",
        str(CONFIG_DIR / "sft-tiny.yaml"),
        f"model={model_dir}",
        f"data=[{{kind: jsonl, path: '{data}'}}]",
        f"output_dir={output}",
        *overrides,
    ]
    if ranks == 1:
        command = cli_command("train", *args)
    else:
        port = str(29500 + os.getpid() % 1000)
        launcher = [sys.executable, "-m", "deepspeed.launcher.runner", f"--num_gpus={ranks}"]
        # As users type it: the launcher puts --local_rank=N before `sft`, which the package hands on.
        command = [*launcher, f"--master_port={port}", "--module", PACKAGE, *args]
    return command, {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_sft(
    model_dir: Path, data: Path, output: Path, *overrides: str, ranks: int = 2, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``train sft`` (see :func:`launcher_command`) to the end; a failure fails the test if ``check``."""
    command, env = launcher_command(model_dir, data, output, *overrides, ranks=ranks)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"train sft failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def read_log(output: Path) -> list[dict]:
    """The training lines of the loss log (evaluation lines left out)."""
    lines = [json.loads(line) for line in (output / LOSS_LOG).read_text().splitlines()]
    return [line for line in lines if "loss" in line]


def checkpoint_complete(checkpoints: Path, tag: str, ranks: int = 2) -> bool:
    """DeepSpeed has named ``tag`` the latest checkpoint and every rank has written its RNG state."""
    latest = checkpoints / "latest"
    return (
        latest.is_file()
        and latest.read_text().strip() == tag
        and all((checkpoints / tag / f"rng_state_{r}.pt").is_file() for r in range(ranks))
    )


def halting(command: list[str], env: Mapping[str, str], *, step: int) -> tuple[list[str], dict[str, str]]:
    """``command`` (``python -m`` the training package, under the launcher or not) with ranks that halt once
    checkpoint ``step`` is saved (:data:`HALTING_MODULE`), and ``env`` with the repository on ``PYTHONPATH``
    so that the ranks find that module."""
    module = command.index(PACKAGE)
    halted = [*command[:module], HALTING_MODULE, str(step), *command[module + 1 :]]
    path = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    return halted, {**env, "PYTHONPATH": path}
