"""The engine's error tree maps the trees parsers/ and signing/ own, and reports them as user errors."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import engine.errors as errors
import parsers.errors
import signing.errors
from engine.cli.main import main


def test_parse_and_signing_errors_are_their_packages_own_and_reexported() -> None:
    """engine.errors re-exports the parsers' and signing's classes themselves; none is a KetquaError, and all are USER_ERRORS."""
    assert errors.ParseError is parsers.errors.ParseError and errors.TruncatedError is parsers.errors.TruncatedError
    assert errors.SigningError is signing.errors.SigningError and errors.VerificationError is signing.errors.VerificationError
    assert issubclass(errors.ManifestError, parsers.errors.ParseError)
    for foreign in (errors.ParseError, errors.SigningError, errors.VerificationError):
        assert not issubclass(foreign, errors.KetquaError)
        assert issubclass(foreign, errors.USER_ERRORS)
    assert issubclass(errors.SignerConfigError, errors.USER_ERRORS)


def test_a_failed_verification_is_not_a_failure_to_sign() -> None:
    """VerificationError is not a SigningError (nor the reverse), and keeps its machine-readable reason."""
    assert not issubclass(errors.VerificationError, errors.SigningError)
    assert not issubclass(errors.SigningError, errors.VerificationError)
    assert errors.VerificationError("bad", reason="expired").reason == "expired"


def test_cli_reports_a_signer_error_as_a_message(tmp_path: Path) -> None:
    """A signer that cannot open (a SigningError, not a KetquaError) ends the command with its message and status 1, no traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "ketqua.toml").write_text('[signing]\nkey = "no-such.key"\ncertificate = "no-such.pem"\n', encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["keys", "show", "--data", str(data)])
    assert status == 1
    assert "no-such.key" in err.getvalue() and "cannot be read" in err.getvalue()
    assert "Traceback" not in err.getvalue()


@pytest.mark.parametrize("raised", [errors.ParseError("x.csv: bad", line=3), errors.VerificationError("bad signature")])
def test_cli_reports_parse_and_verification_errors_as_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raised: Exception) -> None:
    """Whatever command raises a ParseError or VerificationError, the CLI prints 'ketqua <command>: <message>' and exits 1."""
    import engine.cli.commands.keys as keys_command

    def boom(args: object) -> int:
        raise raised

    monkeypatch.setattr(keys_command, "run_show", boom)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["keys", "show", "--data", str(tmp_path)])
    assert status == 1 and str(raised) in err.getvalue()
