"""The command line's rough edges (issue 12): --data anywhere, file errors, verify's advice, Ct as written,
one configuration check for every command, the single-instance lock and owner-only data files."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.datadir import DataDir

REPO = Path(__file__).resolve().parents[3]


def ketqua(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `ketqua` command (python -m engine) in a subprocess."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=cwd or REPO, env=environ,
                          capture_output=True, text=True, timeout=timeout)


def test_data_is_accepted_before_and_after_the_subcommand(tmp_path: Path) -> None:
    """`ketqua --data X retests` and `ketqua retests --data X` both read X (the later one wins when both are given)."""
    data = DataDir.at(tmp_path / "d")
    assert ketqua("tokens", "list", "--data", str(data.root)).returncode == 0  # a ledger to read
    (data.root / "ketqua.toml").write_text("[labb]\n", encoding="utf-8")
    before = ketqua("--data", str(data.root), "retests")
    after = ketqua("retests", "--data", str(data.root))
    for done in (before, after):
        assert done.returncode == 1 and "[labb]" in done.stderr, done.stderr
    assert ketqua("tokens", "list", "--data", str(tmp_path / "other")).returncode == 0
    assert ketqua("--data", str(data.root), "retests", "--data", str(tmp_path / "other")).returncode == 0
    assert ketqua("--data", str(tmp_path), "design", "dorfman:10").returncode == 0


def test_retests_csv_into_a_missing_folder_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """`retests --csv /missing/dir/x.csv` names the file and the reason, exit 1, no traceback."""
    assert ketqua("tokens", "list", "--data", str(tmp_path / "d")).returncode == 0  # a ledger to read
    done = ketqua("retests", "--data", str(tmp_path / "d"), "--csv", str(tmp_path / "missing" / "x.csv"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{tmp_path / 'missing' / 'x.csv'}: No such file or directory" in done.stderr


def test_verify_outside_a_data_folder_says_what_to_pass(tmp_path: Path) -> None:
    """Without trust roots, verify says to pass --data (the lab's folder) or --trust (its CA or JWKS); exit 2."""
    done = ketqua("verify", "HC1:6BFOXN", cwd=tmp_path)
    assert done.returncode == 2
    assert "no trust roots" in done.stderr and "--data DIR" in done.stderr and "--trust FILE" in done.stderr


def test_parse_json_prints_ct_as_the_instrument_wrote_it() -> None:
    """Every Ct printed by `parse --json` is the text the export has on that row's line (24.113, not 24.11300086975098)."""
    source = REPO / "tests" / "data" / "quantstudio_7500_results.txt"
    done = ketqua("parse", "--json", str(source))
    assert done.returncode == 0, done.stderr
    lines = source.read_text(encoding="utf-8").splitlines()
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    cts = [(row["line"], line.split('"ct": ')[1].split(",")[0]) for row, line in zip(printed, done.stdout.splitlines()) if row["ct"] is not None]
    assert cts
    for number, text in cts:
        assert text in lines[number - 1], (number, text, lines[number - 1])


def test_pyhanko_dsa_warning_is_silenced_and_no_other() -> None:
    """Importing pyHanko through ketqua prints no DSA deprecation warning; the same warning from elsewhere still shows."""
    probe = (
        "import warnings, engine.cli, pyhanko.sign.signers, signing.verify\n"
        "from cryptography.utils import CryptographyDeprecationWarning as W\n"
        "warnings.warn('DSA is deprecated (not from pyhanko)', W)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pdf_cms" not in done.stderr and "not from pyhanko" in done.stderr


def test_every_configuration_problem_is_reported_at_once_by_every_command(tmp_path: Path) -> None:
    """A misspelt section, an unknown setting and a wrong value are all listed with line and a suggestion,
    by a read-only command as by run; invalid TOML is refused by read-only commands too."""
    data = DataDir.at(tmp_path / "d").create()
    data.config.write_text(
        '[labb]\nid = "x"\n\n[intake]\nstable_secs = 1\npoll_seconds = "fast"\n\n[api]\nburst = -1\n\n[signing]\nkind = "hsm"\n',
        encoding="utf-8",
    )
    for argv in (("results", "list"), ("retests",), ("tokens", "list"), ("run", "--no-api")):
        done = ketqua(*argv, "--data", str(data.root))
        assert done.returncode == 1, (argv, done.stderr)
        err = done.stderr
        assert "5 problems" in err, err
        assert "line 1: [labb]: unknown section; did you mean [lab]?" in err
        assert "line 5: [intake] stable_secs: unknown setting; did you mean stable_seconds?" in err
        assert "line 6: [intake] poll_seconds: must be a non-negative number, got 'fast'" in err
        assert "line 9: [api] burst: must be a positive number, got -1" in err
        assert "line 12: [signing] kind:" in err
    data.config.write_text("[lab\n", encoding="utf-8")
    done = ketqua("results", "list", "--data", str(data.root))
    assert done.returncode == 1 and "not valid TOML" in done.stderr


def _wait_for_lock(data: DataDir, proc: subprocess.Popen, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            holder = json.loads(data.lock_file.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid") == proc.pid:
            return holder
        time.sleep(0.1)
    raise AssertionError(f"`ketqua run` did not take the lock: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_second_writer_is_refused_while_run_holds_the_data_folder(tmp_path: Path) -> None:
    """While `ketqua run` runs, `ingest` and `demo` refuse at once naming its pid and host; read-only commands work;
    after it stops the folder is free again."""
    data = DataDir.at(tmp_path / "d")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--no-api", "--workers", "0", "--data", str(data.root)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        holder = _wait_for_lock(data, proc)
        for argv in (("ingest", "--quiet"), ("demo", "--no-certificates")):
            done = ketqua(*argv, "--data", str(data.root))
            assert done.returncode == 1, done.stderr
            assert f"the data folder {data.root} is in use by `ketqua run" in done.stderr
            assert f"pid {proc.pid} on host {holder['host']}" in done.stderr and "stop it first or use another --data" in done.stderr
        assert ketqua("results", "list", "--data", str(data.root)).returncode == 0
        assert ketqua("retests", "--data", str(data.root)).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert ketqua("ingest", "--quiet", "--data", str(data.root)).returncode == 0


def _loose(path: Path) -> list[str]:
    """Entries under ``path`` (itself included) that group or others may read, write or enter."""
    found = []
    for entry in [path, *path.rglob("*")]:
        st = os.lstat(entry)
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
            found.append(f"{entry.relative_to(path.parent)} {stat.S_IMODE(st.st_mode):o}")
    return found


@pytest.mark.slow
def test_everything_the_engine_writes_is_owner_only_but_the_inbox(tmp_path: Path) -> None:
    """After a demo with certificate workers: ledger (+wal/shm), archive, quarantine, certificates, exports, keys
    are 0600/0700; the inbox and the data folder keep the lab's permissions."""
    data = DataDir.at(tmp_path / "d")
    done = ketqua("demo", "--workers", "1", "--data", str(data.root), timeout=600)
    assert done.returncode == 0, done.stderr
    assert any(data.certificates.iterdir()) and any(data.archive.iterdir())
    loose = [e for folder in data.private_folders for e in _loose(folder)]
    loose += [e for e in (data.root / f"ledger.sqlite3{s}" for s in ("", "-wal", "-shm")) if e.exists() and _loose(e)]
    assert not loose, loose
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(data.inbox.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE(data.root.stat().st_mode) == 0o777 & ~umask


def test_an_existing_loose_data_folder_is_tightened_with_a_log_line(tmp_path: Path) -> None:
    """Files an older version left 0644 (archive, quarantine, certificates, ledger) become 0600 at the next start, logged once;
    the inbox and the files in it are left as they are."""
    data = DataDir.at(tmp_path / "d")
    for folder in (data.archive, data.quarantine, data.certificates / "2026", data.inbox):
        folder.mkdir(parents=True)
        for made in (folder, folder.parent):
            os.chmod(made, 0o755)
        (folder / "file").write_text("Nguyễn Văn An")
        os.chmod(folder / "file", 0o644)
    data.ledger.write_bytes(b"")
    os.chmod(data.ledger, 0o644)
    done = ketqua("tokens", "list", "--data", str(data.root))
    assert done.returncode == 0, done.stderr
    assert "could be read by other users; now owner-only" in done.stderr and "archive/" in done.stderr
    assert not [e for folder in data.private_folders for e in _loose(folder)]
    assert stat.S_IMODE(data.ledger.stat().st_mode) == 0o600
    assert stat.S_IMODE((data.inbox / "file").stat().st_mode) == 0o644 and stat.S_IMODE(data.inbox.stat().st_mode) == 0o755
    again = ketqua("tokens", "list", "--data", str(data.root))
    assert "owner-only" not in again.stderr
