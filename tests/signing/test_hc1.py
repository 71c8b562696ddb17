"""HC1 QR payloads: EU DCC test vectors, an independent decoder, DCC content, Base45, tampering."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import unicodedata
import zlib
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.datadir import DataDir
from engine.errors import SigningError, VerificationError
from signing import verify as verify_module
from signing.base45 import ALPHABET, b45decode, b45encode
from signing.dcc import RESULT_CODE, test_entry as dcc_test_entry, transliterate, uvci
from signing.hc1 import decode_hc1, sign_hc1
from engine.results.signer import load_signer_spec
from signing.keys import FileKeySigner
from signing.verify import verify_hc1
from tests import shared

VECTORS = shared.VECTORS
# "Now": the signer certificates are created by the tests, valid from yesterday.
ISSUED = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
EXPIRES = ISSUED + dt.timedelta(days=3)

RESULT = {
    "schema": "ketqua/result/1", "id": "hn01-S0042-9c1e", "version": 2,
    "supersedes": {"id": "hn01-S0042-9c1e", "version": 1}, "issued_at": ISSUED.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "outcome": "POSITIVE",
    "lab": {"id": "HN-01", "name": "CDC Hà Nội", "licence": "BYT-123"},
    "person": {"full_name": "Nguyễn Văn Đức", "date_of_birth": "1990-04-30", "sex": "M",
               "national_id": "001090000001", "phone": None, "address": None},
    "specimen": {"id": "S0042", "type": "nasopharyngeal swab", "collected_at": "2026-11-29T08:15:00+07:00",
                 "collection_site": "Trạm Y tế Phường Cửa Nam"},
    "test": {"assay": "taqpath", "kit": "TaqPath COVID-19 Combo Kit", "method": "RT-PCR", "pooled": True,
             "pool_id": "P07", "design": "dorfman:10", "decoder": "dorfman"},
    "evidence": {}, "correction": None,
}


def _vector(name: str) -> dict:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _clock(vector: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(vector["TESTCTX"]["VALIDATIONCLOCK"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory):
    """The development signer of a fresh data folder."""
    return load_signer_spec(DataDir.at(tmp_path_factory.mktemp("hc1"))).open()


# --- EU DCC test vectors (dgc-testdata) ---------------------------------------------------------

VALID_VECTORS = [
    "dcc-SE-2-pcr-test-valid-es256.json",
    "dcc-SE-3-pcr-test-valid-es256-sc-untagged.json",
    "dcc-PL-1.3.0-4-pcr-test-valid-es256.json",
    "dcc-common-CO1-valid-ps256-rsa2048.json",
]
INVALID_VECTORS = [
    ("dcc-common-CO5-invalid-signature.json", "bad-signature"),
    ("dcc-common-CO22-invalid-kid.json", "unknown-kid"),
    ("dcc-common-CO17-expired.json", "expired"),
    ("dcc-common-H2-bad-prefix-HC2.json", "bad-prefix"),
]


@pytest.mark.parametrize("name", VALID_VECTORS)
def test_valid_dcc_vectors_verify(name: str) -> None:
    """Each valid EU DCC vector verifies against its TESTCTX certificate at its validation clock, payload intact."""
    vector = _vector(name)
    cert = base64.b64decode(vector["TESTCTX"]["CERTIFICATE"])
    report = verify_hc1(vector["PREFIX"], [cert], at=_clock(vector))
    assert verify_module._jsonable(report.content["dcc"]) == vector["JSON"]
    assert report.algorithm == ("PS256" if "ps256" in name else "ES256")


@pytest.mark.parametrize(("name", "reason"), INVALID_VECTORS)
def test_invalid_dcc_vectors_fail_for_the_stated_reason(name: str, reason: str) -> None:
    """Each negative EU DCC vector is rejected, and the reason names the check the vector targets."""
    vector = _vector(name)
    cert = base64.b64decode(vector["TESTCTX"]["CERTIFICATE"])
    with pytest.raises(VerificationError) as info:
        verify_hc1(vector["PREFIX"], [cert], at=_clock(vector))
    assert info.value.reason == reason


def test_vector_layers_decode_as_published() -> None:
    """Base45, zlib and COSE layers of a vector decode to the hex the vector publishes."""
    vector = _vector("dcc-SE-2-pcr-test-valid-es256.json")
    raw = b45decode(vector["BASE45"])
    assert raw.hex() == vector["COMPRESSED"].lower()
    assert zlib.decompress(raw).hex() == vector["COSE"].lower()
    assert decode_hc1(vector["PREFIX"]).cose.kid == hashlib.sha256(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"])).digest()[:8]


def test_every_certificate_with_the_kid_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    """When several trusted certificates share a kid, the verifier tries each until one verifies."""
    vector = _vector("dcc-SE-2-pcr-test-valid-es256.json")
    right = x509.load_der_x509_certificate(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
    wrong = x509.load_der_x509_certificate(base64.b64decode(_vector("dcc-common-CO5-invalid-signature.json")["TESTCTX"]["CERTIFICATE"]))
    kid = decode_hc1(vector["PREFIX"]).cose.kid
    monkeypatch.setattr(verify_module, "certificate_kid", lambda cert: kid)  # force a kid collision
    report = verify_hc1(vector["PREFIX"], [wrong, right], at=_clock(vector))
    assert report.signer == right.subject.rfc4514_string()


# --- our HC1, read by an independent decoder ---------------------------------------------------

_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _independent_b45decode(text: str) -> bytes:
    """RFC 9285 written out directly, without signing.base45."""
    out = bytearray()
    for i in range(0, len(text), 3):
        chunk = [_B45.index(c) for c in text[i:i + 3]]
        value = sum(v * 45**k for k, v in enumerate(chunk))
        out += value.to_bytes(2 if len(chunk) == 3 else 1, "big")
    return bytes(out)


def _independent_verify(hc1: str, cert: x509.Certificate) -> dict:
    """Decode and verify an HC1 string with cbor2 + zlib + cryptography only (no ketqua code)."""
    assert hc1.startswith("HC1:")
    message = cbor2.loads(zlib.decompress(_independent_b45decode(hc1[4:])))
    assert message.tag == 18
    protected_bytes, unprotected, payload, signature = message.value
    protected = cbor2.loads(protected_bytes)
    assert protected[4] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()[:8]
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    if protected[1] == -7:
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        cert.public_key().verify(der, to_be_signed, ec.ECDSA(hashes.SHA256()))
    else:
        assert protected[1] == -37
        cert.public_key().verify(signature, to_be_signed, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    return cbor2.loads(payload)


def test_our_hc1_verifies_with_an_independent_decoder(signer) -> None:
    """An HC1 we sign decodes and verifies with a decoder written from the specs, claims as given."""
    dcc = dcc_test_entry(RESULT)
    hc1 = sign_hc1(dcc, signer, issued_at=ISSUED, expires_at=EXPIRES)
    assert _independent_b45decode(hc1[4:])[0] == 0x78  # EU DCC readers inflate only when the first byte is 0x78
    claims = _independent_verify(hc1, signer.certificate)
    assert claims[1] == "VN"
    assert claims[6] == int(ISSUED.timestamp()) and claims[4] == int(EXPIRES.timestamp())
    assert json.loads(json.dumps(claims[-260][1])) == dcc


def test_ps256_hc1_verifies_both_ways() -> None:
    """An RSA (PS256) signer's HC1 verifies with the independent decoder and with ours."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "rsa dsc")]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "rsa dsc")]))
        .public_key(key.public_key()).serial_number(3)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    rsa_signer = FileKeySigner(key, cert)
    hc1 = sign_hc1(dcc_test_entry(RESULT), rsa_signer, issued_at=now, expires_at=now + dt.timedelta(days=1))
    _independent_verify(hc1, cert)
    assert verify_hc1(hc1, [cert], at=now).algorithm == "PS256"


def test_our_hc1_verifies_against_ca_with_signer_candidates(signer) -> None:
    """With the CA as trust and the signer certificate as candidate, the report shows content, times and chain."""
    hc1 = sign_hc1(dcc_test_entry(RESULT), signer, issued_at=ISSUED, expires_at=EXPIRES)
    report = verify_hc1(hc1, [signer.chain[-1]], certificates=[signer.certificate], at=ISSUED + dt.timedelta(hours=1))
    assert report.signed_at == ISSUED and report.expires_at == EXPIRES
    assert report.development and report.chain == [signer.chain[-1].subject.rfc4514_string()]
    assert report.content["dcc"]["t"][0]["tr"] == "260373001"
    with pytest.raises(VerificationError) as info:
        verify_hc1(hc1, [signer.chain[-1]], at=ISSUED)
    assert info.value.reason == "unknown-kid"
    with pytest.raises(VerificationError) as info:
        verify_hc1(hc1, [signer.certificate], at=EXPIRES + dt.timedelta(seconds=1))
    assert info.value.reason == "expired"


def test_signer_certificate_expired_at_iat_is_refused() -> None:
    """An HC1 whose iat lies after the signer certificate's validity fails with certificate-expired."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "short dsc")]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "short dsc")]))
        .public_key(key.public_key()).serial_number(5)
        .not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now - dt.timedelta(days=5))
        .sign(key, hashes.SHA256())
    )
    hc1 = sign_hc1(dcc_test_entry(RESULT), FileKeySigner(key, cert), issued_at=now, expires_at=now + dt.timedelta(days=1))
    with pytest.raises(VerificationError) as info:
        verify_hc1(hc1, [cert], at=now)
    assert info.value.reason == "certificate-expired"


def test_structural_faults_name_their_layer(signer) -> None:
    """Broken Base45, missing compression and non-COSE CBOR each fail with the layer's reason."""
    cases = {
        "HC1:abc": "bad-base45",
        "HC1:" + b45encode(b"not zlib at all"): "bad-compression",
        "HC1:" + b45encode(b"\x78\x9c garbage"): "bad-compression",
        "HC1:" + b45encode(zlib.compress(cbor2.dumps({"a": 1}))): "bad-cose",
        "HC1:" + b45encode(zlib.compress(b"\xff\xfe")): "bad-cbor",
    }
    for text, reason in cases.items():
        with pytest.raises(VerificationError) as info:
            verify_hc1(text, [signer.certificate], at=ISSUED)
        assert info.value.reason == reason, text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), replacement=st.sampled_from(ALPHABET + "abc"))
def test_any_one_character_change_of_an_hc1_string_fails(signer, position: int, replacement: str) -> None:
    """Changing any one character of an HC1 string makes verification fail.

    (A change confined to a zlib stream's unused final padding bits would leave
    the signed COSE bytes identical; such a string is accepted only because
    it carries exactly the signed message, which the test checks.)
    """
    hc1 = sign_hc1(dcc_test_entry(RESULT), signer, issued_at=ISSUED, expires_at=EXPIRES)
    i = position % len(hc1)
    if hc1[i] == replacement:
        replacement = "0" if replacement != "0" else "1"
    forged = hc1[:i] + replacement + hc1[i + 1:]
    try:
        verify_hc1(forged, [signer.certificate], at=ISSUED)
    except VerificationError:
        return
    assert zlib.decompress(b45decode(forged[4:])) == zlib.decompress(b45decode(hc1[4:]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), delta=st.integers(min_value=1, max_value=255))
def test_any_one_byte_change_of_the_signed_payload_fails(signer, position: int, delta: int) -> None:
    """Changing any one byte of the CWT payload, re-wrapped with the original signature, fails verification."""
    hc1 = sign_hc1(dcc_test_entry(RESULT), signer, issued_at=ISSUED, expires_at=EXPIRES)
    message = cbor2.loads(zlib.decompress(b45decode(hc1[4:])))
    protected, unprotected, payload, signature = message.value
    i = position % len(payload)
    forged_payload = payload[:i] + bytes([(payload[i] + delta) % 256]) + payload[i + 1:]
    forged = "HC1:" + b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), forged_payload, signature]))))
    with pytest.raises(VerificationError):
        verify_hc1(forged, [signer.certificate], at=ISSUED)


# --- DCC content -------------------------------------------------------------------------------


def test_test_entry_fields() -> None:
    """A POSITIVE result gives a DCC 1.3.0 test entry with the EU value-set codes and Vietnamese names split."""
    dcc = dcc_test_entry(RESULT)
    assert dcc["ver"] == "1.3.0" and dcc["dob"] == "1990-04-30"
    assert dcc["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn Đức", "gnt": "VAN<DUC"}
    (entry,) = dcc["t"]
    assert entry["tg"] == "840539006" and entry["tt"] == "LP6464-4" and entry["tr"] == "260373001"
    assert entry["nm"] == "TaqPath COVID-19 Combo Kit" and entry["co"] == "VN"
    assert entry["sc"] == "2026-11-29T01:15:00Z"
    assert entry["tc"] == "Trạm Y tế Phường Cửa Nam" and entry["is"] == "CDC Hà Nội"
    assert entry["ci"].startswith("URN:UVCI:01:VN:HN01/") and len(entry["ci"]) <= 50


def test_negative_and_inconclusive_codes() -> None:
    """NEGATIVE maps to 260415000; INCONCLUSIVE to SNOMED 419984006; RETEST cannot be certified."""
    assert dcc_test_entry({**RESULT, "outcome": "NEGATIVE"})["t"][0]["tr"] == "260415000"
    assert dcc_test_entry({**RESULT, "outcome": "INCONCLUSIVE"})["t"][0]["tr"] == RESULT_CODE["INCONCLUSIVE"] == "419984006"
    with pytest.raises(SigningError):
        dcc_test_entry({**RESULT, "outcome": "RETEST"})


def test_names_are_nfc_normalised() -> None:
    """A name arriving decomposed (NFD) is written NFC in fn/gn and transliterated the same way."""
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn Đức")
    dcc = dcc_test_entry({**RESULT, "person": {**RESULT["person"], "full_name": nfd}})
    assert dcc["nam"]["fn"] == unicodedata.normalize("NFC", "Nguyễn")
    assert unicodedata.is_normalized("NFC", dcc["nam"]["gn"])
    assert dcc["nam"]["fnt"] == "NGUYEN" and dcc["nam"]["gnt"] == "VAN<DUC"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nguyễn", "NGUYEN"), ("Trần Thị Ánh", "TRAN<THI<ANH"), ("Đặng", "DANG"), ("Huỳnh Ngọc Ẩn", "HUYNH<NGOC<AN"),
        ("Lövström", "LOEVSTROEM"), ("Rogaliński-Król", "ROGALINSKI<KROL"), ("Gößinger", "GOESSINGER"),
        ("O'Neil", "ONEIL"), ("  Lê   Ư  ", "LE<U"),
    ],
)
def test_icao_transliteration(name: str, expected: str) -> None:
    """Names transliterate ICAO 9303 style (diacritics dropped, Đ→D, Ö→OE, spaces/hyphens → '<'), as DCC vectors do."""
    assert transliterate(name) == expected


def test_uvci_is_stable_per_version_and_unique() -> None:
    """The UVCI is the same for the same (id, version), differs across versions and ids, and fits 50 characters."""
    a = uvci("r1", 1, "HN-01")
    assert a == uvci("r1", 1, "HN-01")
    assert a != uvci("r1", 2, "HN-01") and a != uvci("r2", 1, "HN-01")
    assert len(a) <= 50 and a.count("#") == 1
    many = {uvci(f"r{i}", 1, "HN-01") for i in range(2000)}
    assert len(many) == 2000


# --- Base45 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "text"), [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0")])
def test_base45_rfc9285_examples(raw: bytes, text: str) -> None:
    """Base45 encodes and decodes the examples of RFC 9285 §4.3/§4.4."""
    assert b45encode(raw) == text and b45decode(text) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_base45_roundtrip(raw: bytes) -> None:
    """Any bytes survive Base45 encoding, and the text uses only the QR alphanumeric alphabet."""
    text = b45encode(raw)
    assert set(text) <= set(ALPHABET)
    assert b45decode(text) == raw == _independent_b45decode(text)


def test_base45_rejects_invalid_text() -> None:
    """Lower case, a dangling character or an over-large triplet are not Base45."""
    for bad in ("abc", "A", "GGW", "::"):
        with pytest.raises(VerificationError) as info:
            b45decode(bad)
        assert info.value.reason == "bad-base45"


# --- UVCI check character (eHealth Network Luhn mod N) --------------------------------------------

#: The code points of the eHealth Network reference (ehn-dcc-development/eu-dcc-schema, examples/Luhn-Mod-N/
#: luhn_mod_n.py, ``_CODE_POINTS``), written out here rather than imported so the test does not read our own code.
EHN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"

#: Published UVCIs whose check character the reference reproduces. Sources: issue 16 (the one ketqua got wrong);
#: the inputs of the reference's usage example and docstring (eu-dcc-schema examples/Luhn-Mod-N/usage.py and
#: luhn_mod_n.py, commit 9fe38ed) with the character the reference code returns for them (its docstring still says
#: ``S`` for MY/INPUT/STRING, left from an earlier alphabet: the reference's own validate rejects ``...STRINGS``); and
#: certificates of eu-digital-green-certificates/dgc-testdata (commit 4a62c8d), file named per entry. Of that
#: repository's 138 UVCIs with one check character, 53 agree with the reference; those that do not were computed by
#: their issuers over another scope or alphabet and are not vectors.
EHN_UVCI_VECTORS = [
    ("URN:UVCI:01:VN:VNDEVLAB/HNQPUEEJVAUDKAW54K4VOQCO#P", "issue 16"),
    ("URN:UVCI:01:NL:MY/INPUT/STRING#H", "eu-dcc-schema examples/Luhn-Mod-N/luhn_mod_n.py, run"),
    ("URN:UVCI:01:NL:187/37512422923#Z", "eu-dcc-schema examples/Luhn-Mod-N/usage.py, run"),
    ("URN:UVCI:01:FR:P4LU2647E8HN#/", "dgc-testdata FR/2DCode/raw/DCC_Test_0014.json"),
    ("URN:UVCI:01:FR:Y4996KBJ4Q3Q#:", "dgc-testdata FR/2DCode/raw/DCC_Test_0010.json"),
    ("URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B", "dgc-testdata AT/2DCode/raw/1.json"),
    ("URN:UVCI:01:DK:0EF88044F7935DF2B4A938A38C14C97C#C", "dgc-testdata DK/2DCode/raw/5.json"),
    ("URN:UVCI:01:GR:7UXL2ZTSS6KUZAF2XAAA3A4C4I#E", "dgc-testdata GR/2DCode/raw/1.json"),
    ("URN:UVCI:01:HU:242100001023540659V1T20210614180542#S", "dgc-testdata HU/2DCode/raw/3.json"),
    ("URN:UVCI:01:LT:1227GNXXUEM92NY8J44JW#0", "dgc-testdata LT/2DCode/raw/2.json"),
    ("URN:UVCI:01:SI:C5A831C1889D43AEE053#I", "dgc-testdata SI/2DCode/raw/VAC.json"),
    ("URN:UVCI:01:IS:VERA1234#F", "dgc-testdata IS/2DCode/raw/5.json"),
    ("URN:UVCI:01:SM:112#N", "dgc-testdata SM/2DCode/raw/1.json"),
    ("01BEVLWLUNCYEOWTE6IFPOSVE6PH#2", "dgc-testdata BE/2DCode/raw/1.json"),
    ("01ES05T8034C2ED473E6995B4BA5#A", "dgc-testdata ES/2DCode/raw/501.json"),
]


def _ehn_validates(text: str) -> bool:
    """The reference's validation: factor 1 on the check character, alternating 1/2 leftwards, sum of base-N digits ≡ 0."""
    n, total = len(EHN_ALPHABET), 0
    for position, char in enumerate(reversed(text)):
        addend = EHN_ALPHABET.index(char) * (2 if position % 2 else 1)
        total += addend // n + addend % n
    return total % n == 0


@pytest.mark.parametrize(("published", "source"), EHN_UVCI_VECTORS)
def test_uvci_check_character_matches_the_ehn_reference(published: str, source: str) -> None:
    """Published UVCIs get the check character their issuers (and the eHN reference) wrote."""
    from signing.dcc import luhn_mod_n

    body, check = published.split("#")
    assert luhn_mod_n(body) == check, source
    assert _ehn_validates(body + check), source


def test_issued_uvci_validates_with_the_ehn_reference() -> None:
    """ketqua's own UVCIs pass the reference validation over the whole string before '#'."""
    for i in range(200):
        body, check = uvci(f"r{i}", 1 + i % 3, "HN-01" if i % 2 else None).split("#")
        assert body.startswith("URN:UVCI:01:VN:") and len(check) == 1
        assert _ehn_validates(body + check)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=EHN_ALPHABET, min_size=1, max_size=48))
def test_uvci_check_character_validates(body: str) -> None:
    """Any body over the alphabet plus its check character passes the reference validation."""
    from signing.dcc import luhn_mod_n

    assert _ehn_validates(body + luhn_mod_n(body))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=EHN_ALPHABET, min_size=2, max_size=48), st.data())
def test_uvci_check_character_catches_a_changed_character(body: str, data: st.DataObject) -> None:
    """Changing any one character of body + check breaks the validation (Luhn mod N catches every single error)."""
    from signing.dcc import luhn_mod_n

    text = body + luhn_mod_n(body)
    i = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(st.sampled_from([c for c in EHN_ALPHABET if c != text[i]]))
    assert not _ehn_validates(text[:i] + other + text[i + 1:])


@pytest.mark.parametrize("bad", ["urn:uvci:01:VN:X", "URN:UVCI:01:VN:X#", "URN:UVCI:01:VN:X-Y", "URN UVCI", "URN:UVCI:Ä"])
def test_uvci_check_character_refuses_characters_outside_the_alphabet(bad: str) -> None:
    """The reference fails on a character it has no code point for; so does ketqua, naming it (never skips it)."""
    from signing.dcc import luhn_mod_n

    with pytest.raises(SigningError, match="outside the UVCI alphabet"):
        luhn_mod_n(bad)


def test_uvci_signed_before_issue_16_still_matches_its_result() -> None:
    """A UVCI carrying the old ASCII-ordered check character is still recognised as the result's own; others are not."""
    from signing.dcc import LEGACY_UVCI_ALPHABET, luhn_mod_n, same_uvci

    new = uvci("r1", 1, "VNDEVLAB")
    body = new.split("#")[0]
    old = f"{body}#{luhn_mod_n(body, LEGACY_UVCI_ALPHABET)}"
    assert old != new and same_uvci(old, new) and same_uvci(new, new)
    wrong = next(c for c in EHN_ALPHABET if f"{body}#{c}" not in (old, new))
    assert not same_uvci(f"{body}#{wrong}", new)
    assert not same_uvci(uvci("r2", 1, "VNDEVLAB"), new) and not same_uvci(body, new)
    assert not same_uvci(f"{uvci('r2', 1, 'VNDEVLAB').split('#')[0]}#{old[-1]}", new)
