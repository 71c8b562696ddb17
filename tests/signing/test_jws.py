"""JWS (RFC 7515) signing and verification, JWKS export, and tamper detection."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.datadir import DataDir
from engine.errors import VerificationError
from signing.canonical import canonical_json
from signing.jws import b64url, b64url_decode, decode_header, jwks, sign_compact, verify_compact
from engine.results.signer import load_signer_spec
from signing.keys import FileKeySigner
from signing.pki import ensure_development_pki, issue_leaf

# Results are issued "now": the signer certificates are created by the tests, valid from yesterday.
ISSUED_AT = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
RESULT = {
    "schema": "ketqua/result/1", "id": "lab1-S0001-3f2a", "version": 1, "supersedes": None,
    "issued_at": ISSUED_AT, "outcome": "NEGATIVE",
    "person": {"full_name": "Phạm Minh Châu", "date_of_birth": "2001-07-15"},
    "evidence": {"ct": {"ORF1ab": None, "N": None, "S": None, "MS2": 24.31}},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A data folder with a development PKI."""
    return DataDir.at(tmp_path_factory.mktemp("jws"))


@pytest.fixture(scope="module")
def signer(data: DataDir):
    """The development signer of ``data``."""
    return load_signer_spec(data).open()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_roundtrip_against_root_ca(signer, data: DataDir) -> None:
    """A signed result verifies against the development root CA alone and returns the exact payload bytes."""
    payload = canonical_json(RESULT)
    token = sign_compact(payload, signer)
    assert verify_compact(token, [data.keys / "ca.pem"]) == payload


def test_header_names_the_key_three_ways(signer) -> None:
    """The protected header carries alg ES256, the DCC kid, x5t#S256 and x5c without the self-signed root."""
    header = decode_header(sign_compact(b"{}", signer))
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    assert header["alg"] == "ES256"
    assert _b64d(header["kid"]) == hashlib.sha256(der).digest()[:8]
    assert _b64d(header["x5t#S256"]) == hashlib.sha256(der).digest()
    assert [base64.b64decode(c) for c in header["x5c"]] == [der]


def test_signature_checks_with_plain_cryptography(signer) -> None:
    """Decoding the token by hand (raw r‖s, RFC 7518 §3.4) verifies with the certificate's public key."""
    token = sign_compact(canonical_json(RESULT), signer)
    head, body, sig = token.split(".")
    raw = _b64d(sig)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    signer.certificate.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    assert _b64d(body) == canonical_json(RESULT)


def test_jwks_export_verifies_and_matches_certificate(signer) -> None:
    """The JWKS has one EC P-256 key with kid, x5c chain and coordinates equal to the certificate's key."""
    keyset = jwks(signer)
    assert json.loads(json.dumps(keyset)) == keyset
    (key,) = keyset["keys"]
    numbers = signer.certificate.public_key().public_numbers()
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert int.from_bytes(_b64d(key["x"]), "big") == numbers.x and int.from_bytes(_b64d(key["y"]), "big") == numbers.y
    assert base64.b64decode(key["x5c"][0]) == signer.certificate.public_bytes(serialization.Encoding.DER)
    token = sign_compact(b'{"a":1}', signer)
    assert verify_compact(token, keyset) == b'{"a":1}'
    assert verify_compact(token, jwks([signer.certificate])) == b'{"a":1}'


def test_signer_certificate_as_its_own_trust_root(signer) -> None:
    """Trusting the signer certificate itself (as DCC test data does) verifies via the kid."""
    token = sign_compact(b"{}", signer, x5c=False)
    assert "x5c" not in decode_header(token)
    assert verify_compact(token, [signer.certificate]) == b"{}"


def test_unrelated_root_is_untrusted(signer, tmp_path: Path) -> None:
    """A token whose x5c chain leads to another CA fails with reason untrusted-chain."""
    other = ensure_development_pki(tmp_path / "other")
    with pytest.raises(VerificationError) as info:
        verify_compact(sign_compact(b"{}", signer), [other.ca_cert])
    assert info.value.reason == "untrusted-chain"


def test_alg_none_and_unknown_algorithms_are_refused(signer, data: DataDir) -> None:
    """An unsigned ('none') or HS256 token is refused whatever its signature part says."""
    for alg in ("none", "HS256"):
        header = b64url(json.dumps({"alg": alg, "kid": "x"}).encode()).decode()
        token = f"{header}.{b64url(b'{}').decode()}."
        with pytest.raises(VerificationError) as info:
            verify_compact(token, [data.keys / "ca.pem"])
        assert info.value.reason == "unsupported-algorithm"


def test_detached_payload(signer, data: DataDir) -> None:
    """A detached JWS (header..signature) verifies with its payload and fails with another."""
    payload = canonical_json(RESULT)
    head, _, sig = sign_compact(payload, signer).split(".")
    detached = f"{head}..{sig}"
    assert verify_compact(detached, [data.keys / "ca.pem"], payload=payload) == payload
    with pytest.raises(VerificationError):
        verify_compact(detached, [data.keys / "ca.pem"], payload=payload.replace(b"NEGATIVE", b"POSITIVE"))


def test_expired_signer_certificate_at_signing_time(data: DataDir) -> None:
    """A signer certificate expired at the result's issued_at fails with certificate-expired."""
    ca = x509.load_pem_x509_certificate((data.keys / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((data.keys / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_leaf(ca, ca_key, key.public_key(), days=1)
    signer = FileKeySigner(key, cert, (ca,))
    later = {**RESULT, "issued_at": (cert.not_valid_after_utc + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    token = sign_compact(canonical_json(later), signer)
    with pytest.raises(VerificationError) as info:
        verify_compact(token, [ca])
    assert info.value.reason == "certificate-expired"
    assert verify_compact(token, [ca], at=cert.not_valid_before_utc + dt.timedelta(hours=2))


def test_certificate_without_signing_key_usage_is_refused(data: DataDir) -> None:
    """A certificate allowed only keyEncipherment cannot sign results (reason bad-key-usage)."""
    ca = x509.load_pem_x509_certificate((data.keys / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((data.keys / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "encryption only")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=10))
        .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    token = sign_compact(b'{"a":1}', FileKeySigner(key, cert, (ca,)))
    with pytest.raises(VerificationError) as info:
        verify_compact(token, [ca])
    assert info.value.reason == "bad-key-usage"


def test_base64url_decoding_is_strict() -> None:
    """Padding, standard-alphabet characters and non-zero trailing bits are all refused."""
    assert b64url_decode("AQI") == b"\x01\x02"
    for bad in ("AQI=", "AQJ", "+/8", "A"):
        with pytest.raises(ValueError):
            b64url_decode(bad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), delta=st.integers(min_value=1, max_value=255))
def test_any_one_byte_change_of_the_payload_fails(signer, data: DataDir, position: int, delta: int) -> None:
    """Changing any one byte of a signed payload makes verification fail."""
    payload = canonical_json(RESULT)
    head, _, sig = sign_compact(payload, signer).split(".")
    i = position % len(payload)
    forged = payload[:i] + bytes([(payload[i] + delta) % 256]) + payload[i + 1:]
    token = f"{head}.{b64url(forged).decode()}.{sig}"
    with pytest.raises(VerificationError):
        verify_compact(token, [data.keys / "ca.pem"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), replacement=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="))
def test_any_one_character_change_of_the_token_fails(signer, data: DataDir, position: int, replacement: str) -> None:
    """Changing any one character of a compact JWS makes verification fail."""
    token = sign_compact(canonical_json(RESULT), signer)
    i = position % len(token)
    if token[i] == replacement:
        replacement = "A" if replacement != "A" else "B"
    forged = token[:i] + replacement + token[i + 1:]
    with pytest.raises(VerificationError):
        verify_compact(forged, [data.keys / "ca.pem"])


def test_verify_jws_report_names_signer_chain_and_time(signer, data: DataDir) -> None:
    """verify_jws reports the signer, its chain to the root, DEVELOPMENT, issued_at and the decoded result."""
    from signing.verify import verify_jws

    token = sign_compact(canonical_json(RESULT), signer)
    report = verify_jws(token, [data.keys / "ca.pem"])
    assert report.signer == signer.certificate.subject.rfc4514_string()
    assert report.chain == [signer.chain[-1].subject.rfc4514_string()]
    assert report.development and report.content == RESULT
    assert report.signed_at == dt.datetime.fromisoformat(ISSUED_AT.replace("Z", "+00:00"))
    assert verify_jws(token, jwks(signer)).content == RESULT
