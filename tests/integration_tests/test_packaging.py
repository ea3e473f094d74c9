"""The wheel: train/ installs as ``langchain_aligner_train`` with its configs, no top-level ``train`` package,
and every package of the source tree is in it; installed, it runs from a directory holding a ``train.py``."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.paths import REPOSITORY

SOURCES = ("pyproject.toml", "README.md", "langchain_aligner", "train")
"""What the wheel is built from."""
INSTALLED_AS = {"langchain_aligner": "langchain_aligner", "train": "langchain_aligner_train"}
"""Each source folder and the import name it installs under."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the sources (no build output lands in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPOSITORY / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPOSITORY / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPOSITORY / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [*command, "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (path,) = out.glob("*.whl")
    return path


def test_train_installs_as_langchain_aligner_train_with_every_package_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == set(INSTALLED_AS.values())
    packages = [
        init.parent.relative_to(REPOSITORY)
        for folder in INSTALLED_AS
        for init in (REPOSITORY / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    ]
    missing = [
        str(package)
        for package in packages
        if "/".join([INSTALLED_AS[package.parts[0]], *package.parts[1:], "__init__.py"]) not in names
    ]
    assert not missing, f"not in the wheel (pyproject.toml's [tool.setuptools] packages): {missing}"
    configs = sorted(path.name for path in (REPOSITORY / "train" / "configs").iterdir())
    assert configs and all(f"langchain_aligner_train/configs/{name}" in names for name in configs)
    (entry_points,) = (name for name in names if name.endswith(".dist-info/entry_points.txt"))
    scripts = configparser.ConfigParser()
    scripts.read_string(zipfile.ZipFile(wheel).read(entry_points).decode())
    assert scripts["console_scripts"]["langchain-aligner"] == "langchain_aligner.cli:main"


def test_the_installed_training_package_runs_beside_a_users_train_py(wheel: Path, tmp_path: Path) -> None:
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)  # a pure-Python wheel installs by unpacking
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("raise SystemExit('the user train.py ran')\n")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run(
        [sys.executable, "-m", "langchain_aligner_train", "dpo", "--help"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: langchain-aligner train dpo") and "beta [0.1]" in result.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import langchain_aligner_train as t; print(t.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert Path(where.stdout.strip()) == installed / "langchain_aligner_train" / "__init__.py"
