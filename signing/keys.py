"""Signers: one small protocol, two key stores (a key file, a PKCS#11 token).

Every output format (JWS, HC1/COSE, PAdES) signs through :class:`Signer`, so a
lab can move from a key file to a hardware token by changing configuration
only. Workers receive a picklable :class:`SignerSpec` and open their own
signer (a PKCS#11 session or a loaded key cannot cross a process boundary).

Secrets (passphrases, PINs) are read from an environment variable or a file at
the moment the signer is opened; they are never stored in a spec, printed,
logged or included in an error message.

Configuration (``<data>/ketqua.toml``)::

    [signing]
    kind = "file"                       # or "pkcs11"
    key = "/etc/ketqua/signer.p12"      # encrypted PKCS#8 PEM/DER, or PKCS#12
    certificate = "/etc/ketqua/signer.pem"  # not needed with PKCS#12
    chain = ["/etc/ketqua/issuing-ca.pem", "/etc/ketqua/root.pem"]
    passphrase_env = "KETQUA_KEY_PASSPHRASE"  # or passphrase_file = "/run/secrets/ketqua"

    # kind = "pkcs11"
    module = "/usr/lib/softhsm/libsofthsm2.so"
    token = "ketqua"                    # token label
    key_label = "result-signer"         # private key (and, if no file, certificate) label
    pin_env = "KETQUA_PKCS11_PIN"       # or pin_file = "/run/secrets/pin"

    # PAdES B-T: an RFC 3161 time-stamp on every certificate PDF (default: none, B-B)
    tsa_url = "https://tsa.example.vn/tsr"   # the lab's time-stamping authority (HTTP or HTTPS)
    # tsa = "development"               # or the DEVELOPMENT TSA of keys/tsa.pem + tsa.key (tests, demos)

Relative paths are resolved against the data folder. A ``[signing]`` table
holding only ``tsa``/``tsa_url`` keeps the development signer.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from signing.errors import SignerConfigError, SigningError
from signing.pki import ensure_development_pki
from signing.pkcs11 import open_pkcs11_signer
from signing.signer import (  # noqa: F401  (re-exported: the protocol's long-standing home for callers)
    PSS_SHA256,
    Algorithm,
    CertifiedSigner,
    Signer,
    algorithm_for,
    certificate_kid,
    load_certificates,
    order_chain,
    same_public_key,
)
from signing.timestamp import TimeStamperLike, development_timestamper


class FileKeySigner(CertifiedSigner):
    """A signer whose private key was loaded from a file into this process."""

    __slots__ = ("_key", "_sign")

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        certificate: x509.Certificate,
        chain: tuple[x509.Certificate, ...] = (),
        *,
        source: str = "key file",
    ) -> None:
        if not same_public_key(key.public_key(), certificate.public_key()):
            raise SigningError(
                f"{source}: the private key does not belong to the certificate "
                f"'{certificate.subject.rfc4514_string()}' (check the key and certificate paths)"
            )
        super().__init__(certificate, chain, source)
        self._key = key
        # Bind the per-call work once: the hot path is one C call.
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # RFC 6979 deterministic nonces: a replay after a crash re-signs the same
            # (result id, version) to the very same bytes, and no nonce depends on the RNG.
            ecdsa = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
            self._sign = lambda data: key.sign(data, ecdsa)
        else:
            self._sign = lambda data: key.sign(data, PSS_SHA256, hashes.SHA256())

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)

    def __repr__(self) -> str:  # never shows key material
        return f"FileKeySigner({self._cert.subject.rfc4514_string()!r}, {self._algorithm})"


@dataclass(frozen=True)
class SignerSpec:
    """Picklable description of where the signing key lives; :meth:`open` gives a :class:`Signer`.

    Holds only paths and the *names* of secret sources, never a secret.
    """

    kind: Literal["file", "pkcs11"] = "file"
    key: str | None = None
    certificate: str | None = None
    chain: tuple[str, ...] = ()
    passphrase_env: str | None = None
    passphrase_file: str | None = None
    module: str | None = None
    token: str | None = None
    key_label: str | None = None
    pin_env: str | None = None
    pin_file: str | None = None

    def open(self) -> Signer:
        """Load the key (or log in to the token) and return a ready signer."""
        if self.kind == "file":
            return self._open_file()
        if self.kind == "pkcs11":
            return self._open_pkcs11()
        raise SignerConfigError(f"[signing] kind = {self.kind!r} is not supported (expected 'file' or 'pkcs11')")

    def secret(self, env: str | None, path: str | None, what: str) -> bytes | None:
        """Read a passphrase/PIN from its environment variable or file (trailing newline dropped)."""
        if env:
            value = os.environ.get(env)
            if value is None:
                raise SignerConfigError(f"the {what} is to come from environment variable {env}, which is not set")
            return value.encode("utf-8")
        if path:
            check_private_file(path, f"{what} file")
            try:
                return Path(path).read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise SignerConfigError(f"the {what} file {path} cannot be read ({exc.strerror})") from exc
        return None

    def chain_certificates(self) -> list[x509.Certificate]:
        """The issuer certificates of the configured ``chain`` files, in file order."""
        return [cert for path in self.chain for cert in load_certificates(path)]

    def _open_pkcs11(self) -> CertifiedSigner:
        if not (self.module and self.token and self.key_label):
            raise SignerConfigError("[signing] kind = 'pkcs11' needs module, token and key_label")
        pin = self.secret(self.pin_env, self.pin_file, "token PIN")
        return open_pkcs11_signer(
            module=self.module, token=self.token, key_label=self.key_label, pin=pin, certificate=self.certificate, chain=self.chain
        )

    def _open_file(self) -> FileKeySigner:
        if not self.key:
            raise SignerConfigError("[signing] kind = 'file' needs key = '<path of the key file>'")
        key_path = Path(self.key)
        check_private_file(key_path, "signing key file")
        try:
            raw = key_path.read_bytes()
        except OSError as exc:
            raise SignerConfigError(f"signing key file {key_path} cannot be read ({exc.strerror})") from exc
        password = self.secret(self.passphrase_env, self.passphrase_file, "key passphrase")
        chain: list[x509.Certificate] = []
        cert: x509.Certificate | None = None
        if key_path.suffix.lower() in (".p12", ".pfx"):
            try:
                key, cert, extra = pkcs12.load_key_and_certificates(raw, password)
            except ValueError as exc:
                # cryptography's message never contains the passphrase; keep ours generic anyway.
                raise SigningError(
                    f"{key_path}: cannot open the PKCS#12 file (wrong passphrase, or not a PKCS#12 file)"
                ) from exc
            chain.extend(extra)
        else:
            key = _load_private_key(raw, password, key_path)
        if self.certificate:
            cert = load_certificates(self.certificate)[0]
        if cert is None:
            raise SignerConfigError(f"{key_path}: no certificate; set certificate = '<path of the signer certificate PEM>'")
        chain.extend(self.chain_certificates())
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise SigningError(f"{key_path}: unsupported key type (expected EC P-256 or RSA)")
        return FileKeySigner(key, cert, order_chain(cert, chain), source=str(key_path))


_log = logging.getLogger("ketqua.signing")


def check_private_file(path: str | os.PathLike[str], what: str) -> None:
    """Refuse a key, passphrase or PIN file every user may read; warn when its group may.

    The engine reports the warning through the ``ketqua`` logger; a missing file is
    left to the reader, whose message says so.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o004:
        raise SignerConfigError(f"the {what} {path} can be read by every user on this machine (mode {mode:04o}); run: chmod 600 {path}")
    if mode & 0o040:
        _log.warning(f"the {what} {path} can be read by its group (mode {mode:04o}); run: chmod 600 {path}")


def _load_private_key(raw: bytes, password: bytes | None, path: Path) -> object:
    loader = serialization.load_pem_private_key if b"-----BEGIN" in raw else serialization.load_der_private_key
    try:
        return loader(raw, password=password)
    except TypeError as exc:
        # Raised both for "encrypted but no passphrase" and "passphrase given but not encrypted".
        if password is None:
            raise SignerConfigError(
                f"{path}: the key is encrypted; set passphrase_env or passphrase_file in [signing]"
            ) from exc
        raise SigningError(f"{path}: the key is not encrypted but a passphrase was configured") from exc
    except ValueError as exc:
        raise SigningError(
            f"{path}: cannot decrypt or parse the key (wrong passphrase, or not a PKCS#8 key)"
        ) from exc


def _resolve(root: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else root / path)


def signer_spec_from_table(
    section: dict | None, base_dir: Path, keys_dir: Path, *, source: str = "ketqua.toml"
) -> SignerSpec:
    """The signer a ``[signing]`` table asks for (None: no table), else the development PKI in ``keys_dir``.

    Relative paths resolve against ``base_dir``. The development PKI is created on
    first use, so a fresh data folder can sign (every artefact then says DEVELOPMENT).
    Reading the configuration file is the caller's job.
    """
    # A table naming only the time-stamping authority keeps the development signer;
    # an empty one is still a configured signer (and fails when opened: no key named).
    if section is not None and (not section or set(section) - _TSA_KEYS):
        return spec_from_config(section, base_dir, source=source)
    pki = ensure_development_pki(keys_dir)
    return SignerSpec(
        kind="file",
        key=str(pki.signer_key),
        certificate=str(pki.signer_cert),
        chain=(str(pki.ca_cert),),
    )


def timestamper_from_config(section: dict, keys_dir: Path, *, source: str = "ketqua.toml") -> TimeStamperLike | None:
    """Build the time-stamper a ``[signing]`` table asks for (see the module docstring)."""
    problems = _tsa_problems(section)
    if problems:
        raise SignerConfigError(f"{source}: " + "; ".join(f"[signing] {key}: {message}" for key, message in problems))
    url, tsa = section.get("tsa_url"), section.get("tsa")
    if url is not None:
        from pyhanko.sign.timestamps import HTTPTimeStamper  # lazy: pyHanko's time-stamp clients cost ~0.3 s to import, needed only with tsa_url

        # No session is kept (one POST per token, a session per request), so the stamper pickles
        # into certificate workers and works from any event loop.
        return HTTPTimeStamper(url, timeout=_TSA_TIMEOUT_S)
    if tsa is None:
        return None
    pki = ensure_development_pki(keys_dir)
    # DEVELOPMENT: the lab's own machine vouches for the time; tokens name a DEVELOPMENT TSA
    # and verifiers say so. Tests and demos only.
    return development_timestamper(pki.tsa_cert.read_bytes(), pki.tsa_key.read_bytes(), pki.ca_cert.read_bytes())


#: ``[signing]`` settings that choose the time-stamping authority (PAdES B-T), not the key.
_TSA_KEYS = {"tsa_url", "tsa"}
#: Seconds to wait for a TSA's answer before the certificate batch fails (and is retried from the ledger).
_TSA_TIMEOUT_S = 10

#: Every ``[signing]`` setting: the :class:`SignerSpec` fields (a new one is known here at once) and the TSA keys.
_KNOWN = {f.name for f in fields(SignerSpec)} | _TSA_KEYS


_SECRETS = ("passphrase", "pin", "password")
_TEXT_SETTINGS = ("key", "certificate", "passphrase_env", "passphrase_file", "module", "token", "key_label", "pin_env", "pin_file")


def _tsa_problems(section: dict) -> list[tuple[str, str]]:
    url, tsa = section.get("tsa_url"), section.get("tsa")
    if url is not None and tsa is not None:
        return [("tsa", "both tsa_url and tsa are set; keep one (tsa_url for the lab's real TSA)")]
    if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        return [("tsa_url", f"{url!r} must be an http:// or https:// URL of an RFC 3161 time-stamping service")]
    if tsa is not None and tsa != "development":
        return [("tsa", f"{tsa!r}; the only value is 'development' (a real authority is tsa_url = 'https://...')")]
    return []


def signing_problems(section: dict) -> tuple[set[str], list[tuple[str, str]]]:
    """The settings ``[signing]`` knows and every problem of their values, without opening any key.

    The engine's configuration check calls this for the whole file at once.
    """
    problems: list[tuple[str, str]] = []
    for secret_like in _SECRETS:
        if secret_like in section:
            problems.append((secret_like, f"do not write the {secret_like} in the file; use {secret_like}_env or {secret_like}_file"))
    kind = section.get("kind", "file")
    if kind not in ("file", "pkcs11"):
        problems.append(("kind", f"{kind!r} is not a key store (expected 'file' or 'pkcs11')"))
    for key in _TEXT_SETTINGS:
        if key in section and not isinstance(section[key], str):
            problems.append((key, f"must be a string, got {section[key]!r}"))
    chain = section.get("chain", [])
    if not isinstance(chain, (str, list)) or (isinstance(chain, list) and not all(isinstance(c, str) for c in chain)):
        problems.append(("chain", f"must be a certificate file path or a list of them, got {chain!r}"))
    if kind == "pkcs11" and not all(section.get(k) for k in ("module", "token", "key_label")):
        missing = ", ".join(k for k in ("module", "token", "key_label") if not section.get(k))
        problems.append(("kind", f"'pkcs11' needs module, token and key_label (missing: {missing})"))
    problems.extend(_tsa_problems(section))
    return _KNOWN | set(_SECRETS), problems


def spec_from_config(section: dict, root: Path, *, source: str = "ketqua.toml") -> SignerSpec:
    """Build a :class:`SignerSpec` from a ``[signing]`` table; paths relative to ``root``."""
    if not isinstance(section, dict):
        raise SignerConfigError(f"{source}: [signing] must be a table")
    known, problems = signing_problems(section)
    problems += [(key, f"unknown setting (known: {', '.join(sorted(_KNOWN))})") for key in sorted(set(section) - known)]
    if problems:
        raise SignerConfigError(f"{source}: " + "; ".join(f"[signing] {key}: {message}" for key, message in problems))
    kind = section.get("kind", "file")
    chain = section.get("chain", ())
    if isinstance(chain, str):
        chain = (chain,)
    return SignerSpec(
        kind=kind,
        key=_resolve(root, section.get("key")),
        certificate=_resolve(root, section.get("certificate")),
        chain=tuple(_resolve(root, c) or "" for c in chain),
        passphrase_env=section.get("passphrase_env"),
        passphrase_file=_resolve(root, section.get("passphrase_file")),
        module=section.get("module"),
        token=section.get("token"),
        key_label=section.get("key_label"),
        pin_env=section.get("pin_env"),
        pin_file=_resolve(root, section.get("pin_file")),
    )
