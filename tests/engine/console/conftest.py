"""Fixtures of the console's tests: one processed data folder per module, copied per test that writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.datadir import DataDir
from tests.engine.console.world import ConsoleWorld, build_world


@pytest.fixture(scope="session")
def console_template(tmp_path_factory: pytest.TempPathFactory, dev_keys: Path) -> ConsoleWorld:
    """The processed data folder, built once per session (the pipeline run is the slow part)."""
    return build_world(tmp_path_factory.mktemp("console-world"), dev_keys)


@pytest.fixture
def world(console_template: ConsoleWorld, tmp_path: Path) -> ConsoleWorld:
    """A private copy of the processed data folder: each test may write to its ledger."""
    root = tmp_path / "ketqua-data"
    shutil.copytree(console_template.data.root, root, ignore=shutil.ignore_patterns("ketqua.lock"))
    return ConsoleWorld(DataDir.at(root), console_template.plate, console_template.xss_specimen, console_template.name_specimen)
