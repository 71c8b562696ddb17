"""PKCS#11 signer: the private key stays on a token (HSM, USB token, SoftHSM2 in tests).

The token signs the SHA-256 digest (``CKM_ECDSA`` over a digest we compute)
rather than using ``CKM_ECDSA_SHA256``: every token that supports ECDSA
supports the raw mechanism, while hash-and-sign variants are optional. For RSA
keys ``CKM_SHA256_RSA_PKCS_PSS`` with MGF1-SHA256 and a 32-byte salt gives
PS256.

A session belongs to one process; :class:`signing.keys.SignerSpec` is what
crosses process boundaries, and each worker opens its own session. Signing
calls on one session are serialised with a lock (PKCS#11 forbids concurrent
operations on a session).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signing.errors import PinRefused, SignerConfigError, SigningError
from signing.signer import CertifiedSigner, load_certificates, order_chain, same_public_key

# python-pkcs11 initialises a module once per process; loading it again fails.
_LIBRARIES: dict[str, Any] = {}
_LIBRARY_LOCK = threading.Lock()
# (module, token) → keyed hash of the PIN that logged in (never the PIN itself).
_LOGINS: dict[tuple[str, str], bytes] = {}
_PIN_KEY = os.urandom(32)


def _pin_tag(pin: bytes | None) -> bytes:
    return hmac.new(_PIN_KEY, pin or b"", hashlib.sha256).digest()


def _library(module: str) -> Any:
    try:
        import pkcs11  # lazy: python-pkcs11 loads a native library; only token deployments need it
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise SignerConfigError("PKCS#11 signing needs python-pkcs11 (pip install python-pkcs11)") from exc
    with _LIBRARY_LOCK:
        lib = _LIBRARIES.get(module)
        if lib is None:
            try:
                lib = pkcs11.lib(module)
            except (RuntimeError, OSError, pkcs11.PKCS11Error) as exc:
                raise SignerConfigError(f"PKCS#11 module {module} cannot be loaded ({exc})") from exc
            _LIBRARIES[module] = lib
        return lib


class Pkcs11Signer(CertifiedSigner):
    """A :class:`signing.keys.Signer` whose private key never leaves the token."""

    def __init__(self, session: Any, private_key: Any, certificate: x509.Certificate, chain: tuple[x509.Certificate, ...], *, source: str) -> None:
        import pkcs11  # lazy: as in _library

        super().__init__(certificate, chain, source)
        self._session = session
        self._key = private_key
        self._lock = threading.Lock()
        self._source = source
        if self._algorithm == "ES256":
            self._mechanism = pkcs11.Mechanism.ECDSA
            self._param = None
        else:
            self._mechanism = pkcs11.Mechanism.SHA256_RSA_PKCS_PSS
            self._param = (pkcs11.Mechanism.SHA256, pkcs11.MGF.SHA256, 32)

    def sign(self, data: bytes) -> bytes:
        """Signature over SHA-256 of ``data`` made on the token (DER for ECDSA, as the protocol says)."""
        import pkcs11  # lazy: as in _library

        try:
            with self._lock:
                if self._algorithm == "ES256":
                    raw = self._key.sign(hashlib.sha256(data).digest(), mechanism=self._mechanism)
                else:
                    return bytes(self._key.sign(data, mechanism=self._mechanism, mechanism_param=self._param))
        except pkcs11.PKCS11Error as exc:
            raise SigningError(f"{self._source}: the token refused to sign ({type(exc).__name__})") from exc
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def close(self) -> None:
        """Log out and close the session."""
        self._session.close()

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self._source!r}, {self._cert.subject.rfc4514_string()!r}, {self._algorithm})"


def open_pkcs11_signer(
    *, module: str, token: str, key_label: str, pin: bytes | None, certificate: str | None = None, chain: tuple[str, ...] = ()
) -> Pkcs11Signer:
    """Log in to ``token`` of the PKCS#11 ``module`` with ``pin`` and find the private key (and certificate) by label.

    ``certificate`` and ``chain`` are PEM/DER file paths; without ``certificate``
    the token's certificate stored under ``key_label`` is used. The caller
    (:meth:`signing.keys.SignerSpec.open`) reads the PIN from its configured source.
    """
    import pkcs11  # lazy: as in _library
    from pkcs11 import Attribute, ObjectClass  # lazy: as in _library

    source = f"PKCS#11 token '{token}' key '{key_label}'"
    lib = _library(module)
    try:
        slot_token = lib.get_token(token_label=token)
    except pkcs11.NoSuchToken as exc:
        raise SignerConfigError(f"no PKCS#11 token labelled '{token}' in {module}") from exc
    except pkcs11.MultipleTokensReturned as exc:
        raise SignerConfigError(f"several PKCS#11 tokens are labelled '{token}'; labels must be unique") from exc
    try:
        session = slot_token.open(user_pin=pin.decode("utf-8") if pin is not None else None)
    except pkcs11.UserAlreadyLoggedIn:
        # PKCS#11 login is per application and token: another signer in this
        # process is logged in already and this session shares that login. The
        # token cannot re-check the PIN now, so compare with the one that
        # succeeded (kept only as a keyed hash) lest a wrong PIN ride along.
        if _LOGINS.get((module, token)) != _pin_tag(pin):
            raise PinRefused(f"{source}: the PIN was refused (it differs from the one this process logged in with)") from None
        session = slot_token.open()
    except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinInvalid) as exc:
        raise PinRefused(
            f"{source}: the PIN was refused ({type(exc).__name__}); signing stopped and will not retry it"
            " (tokens lock after a few wrong PINs): fix the PIN source, check the token's retry counter, restart"
        ) from exc
    except (pkcs11.PinLocked, pkcs11.PinExpired) as exc:
        raise PinRefused(f"{source}: the token's PIN is {type(exc).__name__[3:].lower()}; unlock it with the SO PIN, then restart") from exc
    except pkcs11.PKCS11Error as exc:
        raise SigningError(f"{source}: cannot log in ({type(exc).__name__})") from exc
    _LOGINS[(module, token)] = _pin_tag(pin)
    try:
        try:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
        except pkcs11.NoSuchKey as exc:
            raise SignerConfigError(f"{source}: no private key with that label on the token") from exc
        except pkcs11.MultipleObjectsReturned as exc:
            raise SignerConfigError(f"{source}: several private keys carry that label") from exc
        if certificate:
            cert = load_certificates(certificate)[0]
        else:
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: key_label}))
            if not found:
                raise SignerConfigError(
                    f"{source}: no certificate; store one on the token under the same label or set certificate = '<PEM>'"
                )
            cert = x509.load_der_x509_certificate(bytes(found[0][Attribute.VALUE]))
        _check_pair(key, cert, source)
        return Pkcs11Signer(session, key, cert, order_chain(cert, [c for path in chain for c in load_certificates(path)]), source=source)
    except BaseException:
        session.close()
        raise


def _check_pair(private_key: Any, cert: x509.Certificate, source: str) -> None:
    """The certificate must certify the token's key: compare with the public key object of the same label/id."""
    import pkcs11  # lazy: as in _library
    from pkcs11 import ObjectClass  # lazy: as in _library
    from pkcs11.util.ec import encode_ec_public_key  # lazy: as in _library
    from pkcs11.util.rsa import encode_rsa_public_key  # lazy: as in _library

    try:
        public = private_key.session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=private_key.label)
    except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
        return  # no public object to compare with; the first signature check will tell
    try:
        if public.key_type == pkcs11.KeyType.EC:
            der = encode_ec_public_key(public)
        elif public.key_type == pkcs11.KeyType.RSA:
            der = encode_rsa_public_key(public)
        else:
            return
        token_key = serialization.load_der_public_key(der)
    except (ValueError, KeyError, pkcs11.PKCS11Error):
        return
    if not same_public_key(cert.public_key(), token_key):
        raise SigningError(
            f"{source}: the certificate '{cert.subject.rfc4514_string()}' does not certify the key on the token"
        )
