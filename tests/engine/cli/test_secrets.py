"""Secrets fail fast: a refused token PIN stops `ketqua demo`/`run` at start with one message and one login attempt;
a production signer needs the lab's identity; the demo makes no development key beside a production one."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

import signing.pkcs11 as pkcs11_module
from engine.cli.main import main
from engine.datadir import DataDir
from engine.results import signer as engine_signer
from tests.signing.softhsm import PIN_ENV, SoftHsmSigner, softhsm_signer, softhsm_token  # noqa: F401

LAB = '[lab]\nid = "VN-79-TEST"\nname = "Phòng xét nghiệm thử"\nlicence = "BYT-79-999"\n'


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def _token_config(signer: SoftHsmSigner, lab: bool = True) -> str:
    spec = signer.spec
    return (LAB if lab else "") + (
        f'[signing]\nkind = "pkcs11"\nmodule = "{spec.module}"\ntoken = "{spec.token}"\nkey_label = "{spec.key_label}"\n'
        f'pin_env = "{PIN_ENV}"\n' + (f'certificate = "{spec.certificate}"\n' if spec.certificate else "")
    )


class _Counting:
    """Wraps the PKCS#11 library so every login attempt (Token.open with a PIN) is counted."""

    def __init__(self, lib: Any, logins: list[str]) -> None:
        self._lib, self._logins = lib, logins

    def get_token(self, **kw: Any) -> Any:
        token, logins = self._lib.get_token(**kw), self._logins

        class Token:
            def open(self, **kwargs: Any) -> Any:
                if kwargs.get("user_pin") is not None:
                    logins.append("login")
                return token.open(**kwargs)

        return Token()


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    counted: list[str] = []
    real = pkcs11_module._library
    monkeypatch.setattr(pkcs11_module, "_library", lambda module: _Counting(real(module), counted))
    monkeypatch.setattr(engine_signer, "_refused", {})
    return counted


def test_wrong_pin_stops_demo_at_start_with_one_login_attempt(
    softhsm_signer: SoftHsmSigner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logins: list[str]  # noqa: F811
) -> None:
    """KETQUA_PKCS11_PIN=9999 ketqua demo: exit 1 naming the refused PIN (never echoing it), no plate signed,
    exactly one login attempt, and a second start in the same process makes none at all."""
    data = DataDir.at(tmp_path / "data").create()
    data.config.write_text(_token_config(softhsm_signer), encoding="utf-8")
    monkeypatch.setenv(PIN_ENV, "9999")
    status, out, err = _cli("demo", "--workers", "0", "--no-certificates", "--data", str(data.root))
    assert status == 1 and "PIN was refused" in err and "9999" not in err and "signed" not in out
    assert logins == ["login"]
    assert not (data.keys / "ca.pem").exists()  # no development key beside the production token
    status, _, err = _cli("demo", "--workers", "0", "--no-certificates", "--data", str(data.root))
    assert status == 1 and logins == ["login"]


def test_production_signer_without_lab_is_refused(softhsm_signer: SoftHsmSigner, tmp_path: Path) -> None:  # noqa: F811
    """[signing] naming a token but no [lab]: refused before anything runs, saying results would say DEVELOPMENT."""
    data = DataDir.at(tmp_path / "data").create()
    data.config.write_text(_token_config(softhsm_signer, lab=False), encoding="utf-8")
    status, _, err = _cli("demo", "--workers", "0", "--no-certificates", "--data", str(data.root))
    assert status == 1 and "[lab]" in err and "DEVELOPMENT" in err
