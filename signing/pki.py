"""Development PKI: a local CA, a result-signer certificate and a TSA certificate.

Created on first use under ``<data>/keys/`` so that a fresh install can sign and
verify end to end. Every name carries the word DEVELOPMENT, so no artefact
signed with these keys can be mistaken for a production result (the verifier
and ``ketqua keys show`` both say so). Production keys are issued elsewhere
and configured in ``ketqua.toml`` (see :mod:`signing.keys`).

Private keys are unencrypted PKCS#8 PEM written with mode 0600 in a 0700
folder: a passphrase stored beside them would add nothing. Production key
files are expected to be encrypted (PKCS#8 or PKCS#12).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.errors import SigningError

DEVELOPMENT_MARK = "DEVELOPMENT"

#: File names under the keys folder (DESIGN.md: the root certificate is ``keys/ca.pem``).
CA_CERT, CA_KEY = "ca.pem", "ca.key"
SIGNER_CERT, SIGNER_KEY = "signer.pem", "signer.key"
TSA_CERT, TSA_KEY = "tsa.pem", "tsa.key"

_CA_YEARS, _SIGNER_YEARS, _TSA_YEARS = 10, 2, 5


@dataclass(frozen=True)
class DevelopmentPki:
    """Paths of the development PKI files; ``created`` is True when this call wrote them."""

    keys_dir: Path
    created: bool = False

    @property
    def ca_cert(self) -> Path:
        return self.keys_dir / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.keys_dir / CA_KEY

    @property
    def signer_cert(self) -> Path:
        return self.keys_dir / SIGNER_CERT

    @property
    def signer_key(self) -> Path:
        return self.keys_dir / SIGNER_KEY

    @property
    def tsa_cert(self) -> Path:
        return self.keys_dir / TSA_CERT

    @property
    def tsa_key(self) -> Path:
        return self.keys_dir / TSA_KEY


def ensure_development_pki(
    keys_dir: str | os.PathLike[str],
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> DevelopmentPki:
    """Create the development CA, signer and TSA under ``keys_dir`` unless they already exist.

    Idempotent: existing files are kept as they are (re-running never re-keys a
    lab). If the CA exists but a leaf is missing, the leaf is issued from that
    CA; if the CA itself is missing, everything is created afresh.

    ``not_before``/``not_after`` (UTC) pin the validity of everything created
    instead of counting from the clock: tests that sign at a pinned instant
    need keys valid at that instant, whatever day the suite runs.
    """
    pki = DevelopmentPki(Path(keys_dir))
    pki.keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki.keys_dir, 0o700)
    created = False
    try:
        if pki.ca_cert.exists() and pki.ca_key.exists():
            ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
            ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        else:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = _issue_ca(ca_key, not_before=not_before, not_after=not_after)
            _write_private(pki.ca_key, _pem_key(ca_key))
            _write_public(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
            # A new CA invalidates leaves issued by an older one.
            for stale in (pki.signer_cert, pki.signer_key, pki.tsa_cert, pki.tsa_key):
                stale.unlink(missing_ok=True)
            created = True
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise SigningError(f"{pki.ca_key}: the development CA key must be an EC key")
        for cert_path, key_path, kind in (
            (pki.signer_cert, pki.signer_key, "signer"),
            (pki.tsa_cert, pki.tsa_key, "tsa"),
        ):
            if cert_path.exists() and key_path.exists():
                continue
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            leaf = issue_leaf(ca_cert, ca_key, leaf_key.public_key(), kind=kind, not_before=not_before, not_after=not_after)
            _write_private(key_path, _pem_key(leaf_key))
            _write_public(cert_path, leaf.public_bytes(serialization.Encoding.PEM))
            created = True
    except (ValueError, TypeError) as exc:
        raise SigningError(
            f"{pki.keys_dir}: the development PKI files cannot be read ({exc}); "
            "move the keys folder aside and run 'ketqua keys init' again"
        ) from exc
    return DevelopmentPki(pki.keys_dir, created=created)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"ketqua {DEVELOPMENT_MARK} (not for clinical use)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(not_before: dt.datetime | None, not_after: dt.datetime | None, days: int) -> tuple[dt.datetime, dt.datetime]:
    """A validity window: pinned bounds where given, else from a day ago for ``days`` days (clock skew)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start = not_before if not_before is not None else now - dt.timedelta(days=1)
    end = not_after if not_after is not None else (now if not_before is None else start) + dt.timedelta(days=days)
    return start, end


def _issue_ca(
    ca_key: ec.EllipticCurvePrivateKey, *, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> x509.Certificate:
    start, end = _validity(not_before, not_after, 365 * _CA_YEARS)
    name = _name(f"ketqua {DEVELOPMENT_MARK} root CA")
    public = ca_key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    kind: str = "signer",
    common_name: str | None = None,
    days: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """Issue a DEVELOPMENT leaf certificate for ``public_key``.

    ``kind="signer"``: key usage digitalSignature + nonRepudiation (what PAdES
    validators and DCC verifiers look for on a result signer). ``kind="tsa"``:
    digitalSignature with the critical timeStamping extended key usage that
    RFC 3161 requires of a TSA. Also used by tests to certify a PKCS#11 key.
    ``not_before``/``not_after`` pin the window (see :func:`ensure_development_pki`).
    """
    if kind not in ("signer", "tsa"):
        raise SigningError(f"unknown certificate kind {kind!r} (expected 'signer' or 'tsa')")
    if common_name is None:
        common_name = f"ketqua {DEVELOPMENT_MARK} " + ("result signer" if kind == "signer" else "time-stamping authority")
    years = _SIGNER_YEARS if kind == "signer" else _TSA_YEARS
    start, end = _validity(not_before, not_after, days if days is not None else 365 * years)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=(kind == "signer"),
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if kind == "tsa":
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def is_development(cert: x509.Certificate) -> bool:
    """True when the certificate's subject or issuer names it a DEVELOPMENT certificate."""
    return DEVELOPMENT_MARK in cert.subject.rfc4514_string() or DEVELOPMENT_MARK in cert.issuer.rfc4514_string()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, content: bytes) -> None:
    """Write a key so that it is never readable by others, not even for an instant."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def _write_public(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    # Certificates are public, but the keys folder stays 0600 throughout (DESIGN.md).
    os.chmod(path, 0o600)
