"""PAdES signatures: pyHanko's validator is the judge (B-B, B-T, PKCS#11, tampering)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from reportlab.pdfgen import canvas

from engine.errors import SigningError
from signing.keys import FileKeySigner, Signer, SignerSpec
from signing.pades import PadesSigner, TimeStamperLike, _append_signature_field, development_timestamper, pdf_date
from signing.pki import ensure_development_pki, issue_leaf
from tests.signing.softhsm import softhsm_signer, softhsm_token  # noqa: F401  (pytest fixtures)


@dataclass(frozen=True)
class Pki:
    """The development PKI of a test data folder, opened."""

    keys_dir: Path
    signer: Signer
    ca: x509.Certificate
    ca_key: object


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A development CA, result signer and TSA, as ``ketqua keys init`` creates them."""
    paths = ensure_development_pki(tmp_path_factory.mktemp("keys"))
    spec = SignerSpec(kind="file", key=str(paths.signer_key), certificate=str(paths.signer_cert), chain=(str(paths.ca_cert),))
    return Pki(
        keys_dir=paths.keys_dir,
        signer=spec.open(),
        ca=x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()),
        ca_key=serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None),
    )


@pytest.fixture(scope="module")
def unsigned_pdf() -> bytes:
    """A plain one-page PDF written by reportlab (classic cross-reference table)."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, invariant=1)
    c.drawString(72, 720, "Phieu ket qua xet nghiem")
    c.showPage()
    c.save()
    return buffer.getvalue()


def _status(pdf: bytes, root: x509.Certificate, index: int = 0):  # type: ignore[no-untyped-def]
    reader = PdfFileReader(io.BytesIO(pdf))
    context = ValidationContext(trust_roots=[_asn1(root)], allow_fetching=False)
    return validate_pdf_signature(reader.embedded_signatures[index], context)


def _signed_data(pdf: bytes, index: int = 0) -> cms.SignedData:
    reader = PdfFileReader(io.BytesIO(pdf))
    return reader.embedded_signatures[index].signed_data


def _timestamper(pki: Pki) -> TimeStamperLike:
    paths = ensure_development_pki(pki.keys_dir)
    return development_timestamper(
        paths.tsa_cert.read_bytes(), paths.tsa_key.read_bytes(), paths.ca_cert.read_bytes()
    )


def test_bb_signature_is_intact_valid_and_trusted(pki: Pki, unsigned_pdf: bytes) -> None:
    """A B-B signature on any PDF validates in pyHanko as intact, valid, trusted and covering the whole file."""
    signed = PadesSigner(pki.signer).sign(unsigned_pdf)
    status = _status(signed, pki.ca)
    assert status.intact and status.valid and status.trusted
    assert status.coverage.name == "ENTIRE_FILE"
    assert status.bottom_line
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert signed.startswith(unsigned_pdf)  # an incremental update: the original bytes are untouched


def test_bb_signed_attributes_follow_en_319_142(pki: Pki, unsigned_pdf: bytes) -> None:
    """Signed attributes are exactly content-type, message-digest and signing-certificate-v2 (no signing time); /M carries the time."""
    moment = datetime(2026, 11, 29, 15, 4, 5, tzinfo=timezone.utc)
    signed = PadesSigner(pki.signer).sign(unsigned_pdf, signed_at=moment)
    signer_info = _signed_data(signed)["signer_infos"][0]
    kinds = [attr["type"].native for attr in signer_info["signed_attrs"]]
    assert sorted(kinds) == ["content_type", "message_digest", "signing_certificate_v2"]
    # DER SET OF: the attributes travel sorted by their encoding.
    encoded = [attr.dump() for attr in signer_info["signed_attrs"]]
    assert encoded == sorted(encoded)
    ess = next(a for a in signer_info["signed_attrs"] if a["type"].native == "signing_certificate_v2")
    cert_der = pki.signer.certificate.public_bytes(serialization.Encoding.DER)
    import hashlib

    assert ess["values"][0]["certs"][0]["cert_hash"].native == hashlib.sha256(cert_der).digest()
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    assert sig.sig_object["/M"] == pdf_date(moment)
    assert _status(signed, pki.ca).signer_reported_dt == moment


def test_certificates_travel_in_the_cms(pki: Pki, unsigned_pdf: bytes) -> None:
    """The CMS carries the signer certificate and its chain, so a verifier needs only the root."""
    signed = PadesSigner(pki.signer).sign(unsigned_pdf)
    certs = {c.chosen.dump() for c in _signed_data(signed)["certificates"]}
    assert pki.signer.certificate.public_bytes(serialization.Encoding.DER) in certs
    assert pki.ca.public_bytes(serialization.Encoding.DER) in certs


def test_other_root_is_not_trusted(pki: Pki, unsigned_pdf: bytes, tmp_path: Path) -> None:
    """Against an unrelated root the signature stays intact but is not trusted."""
    other = ensure_development_pki(tmp_path / "other")
    other_ca = x509.load_pem_x509_certificate(other.ca_cert.read_bytes())
    status = _status(PadesSigner(pki.signer).sign(unsigned_pdf), other_ca)
    assert status.intact and not status.trusted
    assert not status.bottom_line


def test_bt_carries_a_trusted_timestamp(pki: Pki, unsigned_pdf: bytes) -> None:
    """With a TSA the signature gets an RFC 3161 token over the signature value, which pyHanko validates."""
    signed = PadesSigner(pki.signer, timestamper=_timestamper(pki)).sign(unsigned_pdf)
    status = _status(signed, pki.ca)
    assert status.bottom_line
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact and status.timestamp_validity.valid and status.timestamp_validity.trusted
    signer_info = _signed_data(signed)["signer_infos"][0]
    token = signer_info["unsigned_attrs"][0]
    assert token["type"].native == "signature_time_stamp_token"
    tst_info = token["values"][0]["content"]["encap_content_info"]["content"].parsed
    assert isinstance(tst_info, tsp.TSTInfo)
    import hashlib

    assert tst_info["message_imprint"]["hashed_message"].native == hashlib.sha256(
        signer_info["signature"].native
    ).digest()


def test_bt_inside_a_running_event_loop(pki: Pki, unsigned_pdf: bytes) -> None:
    """Signing with a TSA from inside a coroutine (the pipeline's loop) still fetches the token."""
    import asyncio

    pades = PadesSigner(pki.signer, timestamper=_timestamper(pki))

    async def sign() -> bytes:
        return pades.sign(unsigned_pdf)

    assert _status(asyncio.run(sign()), pki.ca).timestamp_validity is not None


def test_ps256_rsa_signer_validates(pki: Pki, unsigned_pdf: bytes) -> None:
    """An RSA key signs with RSASSA-PSS (PS256) and pyHanko accepts it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue_leaf(pki.ca, pki.ca_key, key.public_key(), kind="signer")  # type: ignore[arg-type]
    signer = FileKeySigner(key, cert, (pki.ca,))
    signed = PadesSigner(signer).sign(unsigned_pdf)
    status = _status(signed, pki.ca)
    assert status.bottom_line
    assert status.md_algorithm == "sha256"


def test_second_signature_keeps_the_first_valid(pki: Pki, unsigned_pdf: bytes) -> None:
    """Counter-signing a signed certificate adds a field; pyHanko still finds the first signature valid."""
    pades = PadesSigner(pki.signer)
    twice = pades.sign(pades.sign(unsigned_pdf), field_name="Countersignature")
    first, second = _status(twice, pki.ca, 0), _status(twice, pki.ca, 1)
    assert second.bottom_line and second.coverage.name == "ENTIRE_FILE"
    assert first.intact and first.valid and first.trusted
    assert first.coverage.name == "ENTIRE_REVISION"


def test_pdf_written_with_xref_streams_can_be_signed(pki: Pki, unsigned_pdf: bytes) -> None:
    """A PDF whose last revision uses a cross-reference stream (as pyHanko writes them) signs and validates."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(unsigned_pdf))
    writer.root["/Lang"] = __import__("pyhanko.pdf_utils.generic", fromlist=["x"]).TextStringObject("vi-VN")
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    assert _status(PadesSigner(pki.signer).sign(out.getvalue()), pki.ca).bottom_line


def test_classic_xref_pdf_takes_the_direct_path(unsigned_pdf: bytes) -> None:
    """A PDF ending in a classic xref table, without a form, is updated directly (no object model is built)."""
    appended = _append_signature_field(unsigned_pdf, b"<< /Type /Sig >>", "KetquaSignature")
    assert appended is not None
    out, base = appended
    assert out.startswith(unsigned_pdf) and out[base:base + 16] == b"<< /Type /Sig >>"
    reader = PdfFileReader(io.BytesIO(bytes(out)))
    assert reader.root["/AcroForm"]["/SigFlags"] == 3
    assert len(reader.root["/Pages"]["/Kids"][0]["/Annots"]) == 1


def test_page_with_annotations_goes_through_pyhanko(pki: Pki) -> None:
    """A page that already has annotations (a link) is signed through pyHanko's writer and keeps them."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, invariant=1)
    c.drawString(72, 720, "xem chi tiet")
    c.linkURL("https://example.org/ket-qua", (72, 710, 200, 730))
    c.showPage()
    c.save()
    pdf = buffer.getvalue()
    assert _append_signature_field(pdf, b"<< >>", "x") is None
    signed = PadesSigner(pki.signer).sign(pdf)
    assert _status(signed, pki.ca).bottom_line
    annots = PdfFileReader(io.BytesIO(signed)).root["/Pages"]["/Kids"][0]["/Annots"]
    assert len(annots) == 2


def test_failing_key_raises_signing_error(pki: Pki, unsigned_pdf: bytes) -> None:
    """A key or token that refuses to sign surfaces as SigningError naming the cause."""

    class BrokenSigner:
        certificate = pki.signer.certificate
        chain = pki.signer.chain
        algorithm = "ES256"
        kid = pki.signer.kid
        development = True

        def sign(self, data: bytes) -> bytes:
            raise RuntimeError("CKR_DEVICE_REMOVED")

    with pytest.raises(SigningError, match="CKR_DEVICE_REMOVED"):
        PadesSigner(BrokenSigner()).sign(unsigned_pdf)  # type: ignore[arg-type]


def test_not_a_pdf_raises_signing_error(pki: Pki) -> None:
    """Bytes that are not a PDF are refused with a SigningError, not a pyHanko exception."""
    with pytest.raises(SigningError, match="cannot add a signature"):
        PadesSigner(pki.signer).sign(b"%PDF-1.7\nthis is not a pdf\n")


def test_naive_signing_time_is_refused(pki: Pki, unsigned_pdf: bytes) -> None:
    """A signing time without a time zone is a programming error reported as SigningError."""
    with pytest.raises(SigningError, match="time zone"):
        PadesSigner(pki.signer).sign(unsigned_pdf, signed_at=datetime(2026, 1, 1))


@pytest.fixture(scope="module")
def signed_once(pki: Pki, unsigned_pdf: bytes) -> tuple[bytes, list[int]]:
    """One signed PDF and its /ByteRange."""
    signed = PadesSigner(pki.signer).sign(unsigned_pdf)
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    return signed, [int(x) for x in sig.sig_object["/ByteRange"]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(min_value=0.0, max_value=1.0, exclude_max=True), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_in_the_signed_ranges_breaks_validation(
    pki: Pki, signed_once: tuple[bytes, list[int]], where: float, flip: int
) -> None:
    """Changing any one byte inside either signed byte range makes the signature fail (or the file unreadable)."""
    signed, (start1, length1, start2, length2) = signed_once
    covered = length1 + length2
    offset = int(where * covered)
    position = start1 + offset if offset < length1 else start2 + (offset - length1)
    tampered = bytearray(signed)
    tampered[position] ^= flip
    try:
        status = _status(bytes(tampered), pki.ca)
    except Exception:
        return  # the change broke the PDF structure: nothing validates
    assert not (status.intact and status.valid), f"byte {position} changed but the signature still validates"


def test_pkcs11_token_key_signs_a_valid_pdf(softhsm_signer, unsigned_pdf: bytes) -> None:  # noqa: F811
    """A key that never leaves a SoftHSM2 token produces a PAdES signature pyHanko trusts."""
    signer = softhsm_signer.spec.open()
    signed = PadesSigner(signer).sign(unsigned_pdf)
    ca = x509.load_pem_x509_certificate(softhsm_signer.ca_pem.read_bytes())
    assert _status(signed, ca).bottom_line
