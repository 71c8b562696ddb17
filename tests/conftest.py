"""Shared fixtures: a fresh data folder with a development PKI.

Generating the development CA and signer costs EC key generation; it is done
once per session and copied into each test's folder (keys stay 0600/0700).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from engine.datadir import DataDir
from tests import shared

#: Validity of every test PKI: from before any instant a test pins to long after the suite
#: could run, so no test depends on today's date (keys made "now" would not be valid at a
#: pinned past instant, nor keys made at a pinned instant today).
PKI_NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
PKI_NOT_AFTER = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)


def make_test_pki(keys: Path):  # -> signing.pki.DevelopmentPki
    """A development PKI valid over the pinned test window (see PKI_NOT_BEFORE)."""
    from signing.pki import ensure_development_pki

    return ensure_development_pki(keys, not_before=PKI_NOT_BEFORE, not_after=PKI_NOT_AFTER)


def pytest_sessionstart(session: pytest.Session) -> None:
    """``KETQUA_TEST_REQUIRE=softhsm,shared,browser`` (CI) turns what would be skips into a failed run."""
    required = {w.strip() for w in os.environ.get("KETQUA_TEST_REQUIRE", "").split(",") if w.strip()}
    missing = []
    if "shared" in required and not shared.PRESENT:
        missing.append(shared.REASON)
    if "softhsm" in required:
        from tests.signing.softhsm import softhsm_library

        if softhsm_library() is None:
            missing.append("SoftHSM2 is not installed (apt-get install softhsm2): the PKCS#11 tests would be skipped")
    if "browser" in required and not all(Path(p).exists() for p in ("/usr/bin/chromium", "/usr/bin/chromedriver")):
        missing.append("no system Chromium and chromedriver (apt-get install chromium chromium-driver): the console's browser tests would be skipped")
    if missing:
        pytest.exit("required by KETQUA_TEST_REQUIRE: " + "; ".join(missing), returncode=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared/fixtures, every test that reads it is skipped with one reason."""
    if shared.PRESENT:
        return
    skip = pytest.mark.skip(reason=shared.REASON)
    for item in items:
        function = getattr(item, "function", None)
        params = getattr(getattr(item, "callspec", None), "params", {}).values()
        if function is not None and shared.uses_shared(function, params):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI created once for the whole test session, valid over the pinned test window."""
    keys = tmp_path_factory.mktemp("dev-pki") / "keys"
    make_test_pki(keys)
    return keys


@pytest.fixture
def data_dir(tmp_path: Path, dev_keys: Path) -> DataDir:
    """A created data folder whose keys/ holds a copy of the session's development PKI."""
    data = DataDir.at(tmp_path / "ketqua-data")
    shutil.copytree(dev_keys, data.keys)
    return data.create()
