"""PKCS#11 signer against a SoftHSM2 token whose key cannot leave the token."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest

from cryptography.hazmat.primitives import hashes

from signing.errors import SignerConfigError, SigningError, VerificationError
from signing.canonical import canonical_json
from signing.hc1 import sign_hc1
from signing.jws import sign_compact, verify_compact
from signing.keys import SignerSpec
from signing.verify import verify_hc1
from tests.signing.softhsm import PIN_ENV, SoftHsmSigner, open_session, softhsm_signer, softhsm_token  # noqa: F401

# "Now": the token key's certificate is issued by the fixture, valid from yesterday.
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DCC = {
    "ver": "1.3.0",
    "nam": {"fn": "Trần", "fnt": "TRAN", "gn": "Thị Bình", "gnt": "THI<BINH"},
    "dob": "1985-03-04",
    "t": [{"tg": "840539006", "tt": "LP6464-4", "nm": "TaqPath", "sc": "2026-11-29T01:00:00Z", "tr": "260415000",
           "tc": "Lab", "co": "VN", "is": "Lab", "ci": "URN:UVCI:01:VN:X/ABC#1"}],
}


def test_token_key_is_not_extractable(softhsm_signer: SoftHsmSigner) -> None:
    """The signing key generated on the token is sensitive and cannot be exported."""
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    with open_session(softhsm_signer.token) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=softhsm_signer.spec.key_label)
        assert key[Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.PKCS11Error):
            key[Attribute.VALUE]


def test_pkcs11_spec_is_picklable_and_holds_no_pin(softhsm_signer: SoftHsmSigner) -> None:
    """A PKCS#11 SignerSpec crosses process boundaries and carries only the PIN's source, not the PIN."""
    blob = pickle.dumps(softhsm_signer.spec)
    assert softhsm_signer.token.pin.encode() not in blob
    assert pickle.loads(blob) == softhsm_signer.spec


def test_pkcs11_signer_signs_jws_that_verifies(softhsm_signer: SoftHsmSigner) -> None:
    """A JWS signed on the token verifies against the CA that certified the token key."""
    signer = softhsm_signer.spec.open()
    assert signer.algorithm == "ES256" and signer.development
    payload = canonical_json({"id": "r1", "issued_at": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "NEGATIVE"})
    token = sign_compact(payload, signer)
    assert verify_compact(token, [softhsm_signer.ca_pem]) == payload


def test_pkcs11_signer_signs_hc1_that_verifies(softhsm_signer: SoftHsmSigner) -> None:
    """An HC1 signed on the token verifies, and its kid is that of the token's certificate."""
    signer = softhsm_signer.spec.open()
    hc1 = sign_hc1(DCC, signer, issued_at=NOW, expires_at=NOW + dt.timedelta(days=3))
    report = verify_hc1(hc1, [softhsm_signer.ca_pem], certificates=[signer.certificate], at=NOW)
    assert report.content["dcc"] == DCC
    assert report.signer_sha256 == signer.certificate.fingerprint(hashes.SHA256()).hex()


def test_pkcs11_wrong_pin_is_refused_without_echoing_it(softhsm_signer: SoftHsmSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong PIN fails with a SigningError whose message does not contain the PIN."""
    monkeypatch.setenv(PIN_ENV, "999999")
    with pytest.raises(SigningError) as info:
        softhsm_signer.spec.open()
    assert "999999" not in str(info.value)
    assert "PIN" in str(info.value)


def test_pkcs11_unknown_key_label_names_the_label(softhsm_signer: SoftHsmSigner) -> None:
    """A key label that is not on the token gives a configuration error naming token and label."""
    spec = SignerSpec(**{**softhsm_signer.spec.__dict__, "key_label": "no-such-key"})
    with pytest.raises(SignerConfigError) as info:
        spec.open()
    assert "no-such-key" in str(info.value)


def test_pkcs11_signature_is_bound_to_the_token_certificate(softhsm_signer: SoftHsmSigner, tmp_path) -> None:
    """A token JWS does not verify against an unrelated trust root."""
    from signing.pki import ensure_development_pki

    other = ensure_development_pki(tmp_path / "other")
    signer = softhsm_signer.spec.open()
    token = sign_compact(b'{"a":1}', signer)
    with pytest.raises(VerificationError) as info:
        verify_compact(token, [other.ca_cert], at=NOW)
    assert info.value.reason == "untrusted-chain"


def test_pkcs11_rsa_key_signs_ps256(softhsm_signer: SoftHsmSigner) -> None:
    """An RSA-2048 token key gives a PS256 signer (CKM_SHA256_RSA_PKCS_PSS) whose JWS and HC1 verify."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.rsa import encode_rsa_public_key

    from signing.pki import issue_leaf

    with open_session(softhsm_signer.token, rw=True) as session:
        public, _ = session.generate_keypair(
            KeyType.RSA, 2048, store=True, label="ketqua-rsa-signer",
            private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.SIGN: True},
        )
        public_key = serialization.load_der_public_key(encode_rsa_public_key(public))
    ca = x509.load_pem_x509_certificate(softhsm_signer.ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key((softhsm_signer.keys_dir / "ca.key").read_bytes(), password=None)
    cert = issue_leaf(ca, ca_key, public_key, common_name="ketqua DEVELOPMENT RSA token signer")  # type: ignore[arg-type]
    cert_path = softhsm_signer.keys_dir / "rsa-token-signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    spec = SignerSpec(**{**softhsm_signer.spec.__dict__, "key_label": "ketqua-rsa-signer", "certificate": str(cert_path)})
    signer = spec.open()
    assert signer.algorithm == "PS256"
    token = sign_compact(b'{"outcome":"POSITIVE"}', signer)
    assert verify_compact(token, [softhsm_signer.ca_pem], at=NOW) == b'{"outcome":"POSITIVE"}'
    hc1 = sign_hc1(DCC, signer, issued_at=NOW, expires_at=NOW + dt.timedelta(days=1))
    assert verify_hc1(hc1, [softhsm_signer.ca_pem], certificates=[cert], at=NOW).algorithm == "PS256"
