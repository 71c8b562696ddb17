"""Reusable pytest fixtures: a throw-away SoftHSM2 token holding a non-extractable P-256 signing key.

Import the fixtures into a test module to use them::

    from tests.signing.softhsm import softhsm_token, softhsm_signer  # noqa: F401

``softhsm_signer`` gives a :class:`SoftHsmSigner` with ``spec`` (a picklable
``SignerSpec(kind="pkcs11")``), ``ca_pem`` (the trust root that issued the
token key's certificate) and ``keys_dir`` (a development PKI, TSA included).
Tests skip, saying why, only when SoftHSM2 is not installed (CI installs it).

SoftHSM reads ``SOFTHSM2_CONF`` once, when the module is first initialised in
a process, so there is one token per test process: created before
python-pkcs11 loads the library, and shared by every module that imports these
fixtures (pytest would otherwise instantiate an imported session fixture once
per importing module).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signing.keys import SignerSpec

PIN_ENV = "KETQUA_TEST_PKCS11_PIN"
TOKEN_LABEL = "ketqua-test"
KEY_LABEL = "ketqua-result-signer"
_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def softhsm_library() -> str | None:
    """Path of libsofthsm2.so, from the usual places or ``dpkg -L``; None when not installed."""
    for candidate in _CANDIDATES:
        if Path(candidate).exists():
            return candidate
    if shutil.which("dpkg"):
        for package in ("libsofthsm2", "softhsm2"):
            listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
            for line in listing.stdout.splitlines():
                if line.endswith("/libsofthsm2.so") and Path(line).exists():
                    return line
    return None


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised token: module path, token label, user PIN and SO PIN (test values only)."""

    module: str
    label: str
    pin: str
    so_pin: str
    conf: Path


@dataclass(frozen=True)
class SoftHsmSigner:
    """A token key with its certificate issued by a test CA."""

    token: SoftHsmToken
    spec: SignerSpec
    ca_pem: Path
    keys_dir: Path


_PROCESS: dict[str, object] = {}


def open_session(token: SoftHsmToken, *, rw: bool = False):  # type: ignore[no-untyped-def]
    """A logged-in session on the test token (PKCS#11 login is per process: reuse it if already in)."""
    import pkcs11

    from signing.pkcs11 import _library

    handle = _library(token.module).get_token(token_label=token.label)
    try:
        return handle.open(user_pin=token.pin, rw=rw)
    except pkcs11.UserAlreadyLoggedIn:
        return handle.open(rw=rw)


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """A fresh SoftHSM2 token in a temporary directory (SOFTHSM2_CONF points at its config)."""
    cached = _PROCESS.get("token")
    if isinstance(cached, SoftHsmToken):
        yield cached
        return
    module = softhsm_library()
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2); the PKCS#11 signer cannot be tested")
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin, so_pin = "246810", "13579111"
    init = subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", so_pin, "--pin", pin],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        pytest.fail(f"softhsm2-util --init-token failed: {init.stderr.strip() or init.stdout.strip()}")
    token = SoftHsmToken(module=module, label=TOKEN_LABEL, pin=pin, so_pin=so_pin, conf=conf)
    _PROCESS["token"] = token
    # SOFTHSM2_CONF stays set: the library, once loaded, keeps using this token store
    # for the rest of the process, and later importers of these fixtures reuse it.
    yield token


@pytest.fixture(scope="session")
def softhsm_signer(softhsm_token: SoftHsmToken, tmp_path_factory: pytest.TempPathFactory) -> SoftHsmSigner:
    """A non-extractable, sensitive EC P-256 key generated on the token, certified by a test CA."""
    cached = _PROCESS.get("signer")
    if isinstance(cached, SoftHsmSigner):
        os.environ[PIN_ENV] = cached.token.pin
        return cached
    from cryptography.hazmat.primitives import serialization
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    from signing.pki import ensure_development_pki, issue_leaf

    with open_session(softhsm_token, rw=True) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        public, private = params.generate_keypair(
            store=True,
            label=KEY_LABEL,
            private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True},
        )
        assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
        public_key = serialization.load_der_public_key(encode_ec_public_key(public))
    keys_dir = tmp_path_factory.mktemp("softhsm-pki")
    pki = ensure_development_pki(keys_dir)
    ca_cert = _load_cert(pki.ca_cert)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    cert = issue_leaf(ca_cert, ca_key, public_key, common_name="ketqua DEVELOPMENT token signer")  # type: ignore[arg-type]
    cert_path = keys_dir / "token-signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.environ[PIN_ENV] = softhsm_token.pin
    spec = SignerSpec(
        kind="pkcs11",
        module=softhsm_token.module,
        token=softhsm_token.label,
        key_label=KEY_LABEL,
        pin_env=PIN_ENV,
        certificate=str(cert_path),
        chain=(str(pki.ca_cert),),
    )
    signer = SoftHsmSigner(token=softhsm_token, spec=spec, ca_pem=pki.ca_cert, keys_dir=keys_dir)
    _PROCESS["signer"] = signer
    return signer


def _load_cert(path: Path):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())
