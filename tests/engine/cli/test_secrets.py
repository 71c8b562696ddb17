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


def _production_key(folder: Path) -> tuple[Path, Path]:
    """A P-256 key (0600) and a self-signed certificate without the DEVELOPMENT mark, valid over the pinned window."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from tests.conftest import PKI_NOT_AFTER, PKI_NOT_BEFORE

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab result signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(PKI_NOT_BEFORE).not_valid_after(PKI_NOT_AFTER).sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "signer.key", folder / "signer.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_production_signer_without_lab_is_refused(tmp_path: Path) -> None:
    """A production key but no [lab]: refused before any plate, saying results would say DEVELOPMENT;
    the demo made no development key beside it."""
    key, cert = _production_key(tmp_path)
    data = DataDir.at(tmp_path / "data").create()
    data.config.write_text(f'[signing]\nkey = "{key}"\ncertificate = "{cert}"\n', encoding="utf-8")
    status, _, err = _cli("demo", "--workers", "0", "--no-certificates", "--data", str(data.root))
    assert status == 1 and "[lab]" in err and "DEVELOPMENT" in err
    assert not (data.keys / "ca.pem").exists()
    data.config.write_text(LAB + f'[signing]\nkey = "{key}"\ncertificate = "{cert}"\n', encoding="utf-8")
    status, out, err = _cli("demo", "--workers", "0", "--no-certificates", "--data", str(data.root))
    assert status == 0 and "signed" in out, err


def test_world_readable_passphrase_file_is_refused_group_readable_warned(tmp_path: Path) -> None:
    """A passphrase file at 0644 is refused naming the file and `chmod 600`; at 0640 it is used with a warning."""
    from cryptography.hazmat.primitives import serialization

    from signing.errors import SignerConfigError
    from signing.keys import SignerSpec, check_private_file
    from tests.conftest import make_test_pki

    pki = make_test_pki(tmp_path / "keys")
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"correct horse\n")
    key = serialization.load_pem_private_key(pki.signer_key.read_bytes(), None)
    encrypted = tmp_path / "signer.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"correct horse")))
    encrypted.chmod(0o600)
    spec = SignerSpec(kind="file", key=str(encrypted), certificate=str(pki.signer_cert), passphrase_file=str(secret))
    secret.chmod(0o644)
    with pytest.raises(SignerConfigError, match=f"chmod 600 {secret}"):
        spec.open()
    secret.chmod(0o640)
    assert spec.open().certificate is not None
    encrypted.chmod(0o604)
    with pytest.raises(SignerConfigError, match="signing key file"):
        check_private_file(encrypted, "signing key file")
