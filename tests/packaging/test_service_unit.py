"""The shipped systemd unit parses, runs as its own user, and never restarts into a token lockout."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "ketqua.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_the_unit_runs_ketqua_as_an_unprivileged_user_with_hardening() -> None:
    service = _unit()["Service"]
    assert service["User"] == "ketqua" and service["UMask"] == "0077"
    assert service["ExecStart"].split()[1:3] == ["run", "--data"]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    # A refused PIN exits 1 at start: restarting would ask the token again and lock it.
    assert service["Restart"] == "on-failure" and "1" in service["RestartPreventExitStatus"].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze on this machine")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser finds no syntax error (missing users and binaries on a test machine are not errors)."""
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", str(UNIT)], capture_output=True, text=True)
    problems = [line for line in (run.stderr + run.stdout).splitlines()
                if "Unknown" in line or "Invalid" in line or "Failed to parse" in line or "unknown" in line.lower() and "key" in line.lower()]
    assert not problems, problems
