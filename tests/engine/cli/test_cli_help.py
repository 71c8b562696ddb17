"""Every ``ketqua`` command and subcommand answers ``--help``."""

from __future__ import annotations

import argparse

import pytest

from engine.cli.main import build_parser, main
from tests import shared


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(prefix + (name,))
                paths.extend(_command_paths(sub, prefix + (name,)))
    return paths


COMMANDS = _command_paths(build_parser())


def test_the_documented_commands_exist() -> None:
    """The command-line contract of DESIGN.md is present: each documented command is discovered."""
    top = {path[0] for path in COMMANDS}
    assert {"demo", "run", "ingest", "parse", "formats", "results", "retests", "design", "simulate",
            "keys", "verify", "tokens", "pull", "bench"} <= top
    assert {("results", "list"), ("results", "show"), ("keys", "init"), ("keys", "show")} <= set(COMMANDS)


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "ketqua")
def test_help_exits_zero_and_mentions_data(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """``ketqua … --help`` prints usage and exits 0; every leaf command documents ``--data``."""
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ketqua")
    if path and not any(p[:len(path)] == path and len(p) > len(path) for p in COMMANDS):
        assert "--data" in out


def test_closed_stdout_pipe_is_not_a_crash() -> None:
    """``ketqua parse big-file --json | head -1``: a reader that leaves early gives exit 0 and no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    fixture = shared.REAL / "biorad_cfx_csv" / "CFX_sample.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "parse", "--json", str(fixture)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout.read(1) == b"{"
    proc.stdout.close()  # far more than a pipe buffer is still to be written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
