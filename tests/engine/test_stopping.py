"""SIGTERM at any moment of ``ketqua run``'s start-up stops it cleanly (exit 0), never kills it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.stopping import is_service_command

REPO = Path(__file__).resolve().parents[2]


def _catches(pid: int, sig: int) -> bool:
    """True when process ``pid`` has a handler installed for ``sig`` (Linux /proc SigCgt mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_service_command_is_recognised_with_data_before_or_after() -> None:
    """Only `run` is the service, whether --data comes before or after it."""
    assert is_service_command(["run", "--no-api"])
    assert is_service_command(["--data", "x", "run"])
    assert not is_service_command(["--data", "run", "demo"])
    assert not is_service_command(["demo"])
    assert not is_service_command([])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to see the signal handlers")
def test_sigterm_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    """The stop handler is in place before the ledger is opened, and a SIGTERM then gives exit 0, not -15."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--no-api", "--workers", "1", "--no-certificates", "--data", str(data)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _catches(proc.pid, signal.SIGTERM):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.001)
        # Early: the engine has not opened its ledger yet, so this signal lands in the start-up window.
        assert not (data / "ledger.sqlite3").exists()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"stopped" in err
