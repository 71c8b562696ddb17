"""Shared fixtures: a fresh data folder with a development PKI.

Generating the development CA and signer costs EC key generation; it is done
once per session and copied into each test's folder (keys stay 0600/0700).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.datadir import DataDir


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI created once for the whole test session."""
    from signing.pki import ensure_development_pki

    keys = tmp_path_factory.mktemp("dev-pki") / "keys"
    ensure_development_pki(keys)
    return keys


@pytest.fixture
def data_dir(tmp_path: Path, dev_keys: Path) -> DataDir:
    """A created data folder whose keys/ holds a copy of the session's development PKI."""
    data = DataDir.at(tmp_path / "ketqua-data")
    shutil.copytree(dev_keys, data.keys)
    return data.create()
