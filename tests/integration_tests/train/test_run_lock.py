"""One live run per output directory: a run into a directory that a live process holds is refused in one line,
and the directory is free again once the holder has died (however it died)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_aligner.testing import cli_command
from langchain_aligner_train.config import CONFIG_DIR
from langchain_aligner_train.run_lock import LOCK_FILE, RunDirectoryInUse, hold_run_directory
from tests.helpers.paths import REPOSITORY
from tests.helpers.training import checkpoint_complete, halting, launcher_command, write_qac

HOLDER = """
import sys, threading
from langchain_aligner_train.run_lock import hold_run_directory
with hold_run_directory(sys.argv[1]):
    print("held", flush=True)
    threading.Event().wait()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A live process that holds ``tmp_path/run`` with :func:`hold_run_directory`, killed after the test."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run")],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait(timeout=60)


def test_a_held_directory_is_refused_naming_the_holder_and_freed_when_it_is_killed(
    holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert (run / LOCK_FILE).read_text() == f"pid {holder.pid} on {socket.gethostname()}\n"
    with pytest.raises(RunDirectoryInUse, match=f"in use by a live run \\(pid {holder.pid} on "):
        with hold_run_directory(run):
            pass
    holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock with the process
    holder.wait(timeout=60)
    with hold_run_directory(run):
        assert (run / LOCK_FILE).read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
    with hold_run_directory(run):  # released on leaving the block, too
        pass


@pytest.mark.parametrize(
    "command",
    [
        ["sft", "--config", str(CONFIG_DIR / "sft-tiny.yaml")],
        ["sft", "--config", str(CONFIG_DIR / "sft-tiny.yaml"), "--resume"],
        ["sft", "--config", str(CONFIG_DIR / "sft-tiny.yaml"), "--export-checkpoint"],
        ["dpo", "--config", str(CONFIG_DIR / "dpo-upstream.yaml"), "deepspeed=null"],
    ],
    ids=["sft", "sft-resume", "sft-export-checkpoint", "dpo"],
)
def test_train_into_a_held_directory_is_refused_in_one_line(
    command: list[str], holder: subprocess.Popen[str], tiny_llama_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    data = write_qac(tmp_path / "qac.jsonl")
    sources = f"[{{kind: jsonl, path: '{data}'}}]" if command[0] == "sft" else str(data)
    result = subprocess.run(
        [
            *cli_command("train"),
            *command,
            f"model={tiny_llama_dir}",
            f"data={sources}",
            f"output_dir={run}",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"langchain-aligner train {command[0]}: error: {run} is in use by a live run (pid {holder.pid} on "
        f"{socket.gethostname()}): stop that run first (train/README.md, 'Stop a run') or choose another "
        "output_dir"
    ]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE] and holder.poll() is None


@pytest.mark.slow
def test_a_live_run_holds_its_directory_until_its_process_group_is_terminated(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """As train/README.md says to stop a run: SIGTERM to the launcher's process group ends every rank, keeps
    the last complete checkpoint and frees the directory for ``--resume``."""
    data, output = write_qac(tmp_path / "qac.jsonl"), tmp_path / "run"
    # The ranks wait after checkpoint 1.
    command, env = halting(
        *launcher_command(tiny_llama_dir, data, output, "save_steps=1", "eval_share=0"), step=1
    )
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while process.poll() is None and not checkpoint_complete(output / "checkpoints", "step-1"):
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it was stopped"
        rank0 = int((output / LOCK_FILE).read_text().split()[1])
        with pytest.raises(RunDirectoryInUse, match=f"\\(pid {rank0} on "):
            with hold_run_directory(output):
                pass
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=120)
        while _group_alive(process.pid):  # the ranks end with the launcher's children
            time.sleep(0.05)
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    with hold_run_directory(output):
        assert (output / "checkpoints" / "latest").read_text().strip() == "step-1"
        assert not (output / "model").exists(), "a terminated run neither trains on nor exports"


def _group_alive(pgid: int) -> bool:
    """Some process of group ``pgid`` still runs (zombies, ended but not yet reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
