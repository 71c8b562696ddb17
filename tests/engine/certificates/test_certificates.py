"""Certificate PDFs: text layer, QR, PAdES signature, golden content per certificate type."""

from __future__ import annotations

import copy
import io
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pypdf
import pypdfium2
import pytest
import zxingcpp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from engine.certificates.layout import REPERTOIRE
from engine.certificates.qr import qr_modules
from engine.certificates.writer import (
    CertificateWriter,
    certificate_filename,
    mask_national_id,
    mask_phone,
    render_certificate,
    sign_certificate,
)
from engine.errors import SigningError
from signing.dcc import test_entry as dcc_test_entry
from signing.hc1 import sign_hc1
from signing.keys import Signer, SignerSpec
from signing.pades import PadesSigner
from signing.pki import ensure_development_pki
from tests.signing.softhsm import softhsm_signer, softhsm_token  # noqa: F401  (pytest fixtures)

# A real-looking HC1 payload (Base45 alphabet only); tests that need a signed one make it with signing.hc1.
HC1 = (
    "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH-R6IOO6+IUKRG*I.I5BROCWAAT4V22F/8X*G3M9JUPY0BX/KR96R/S09T./0LWTKD33236J3TA3M*4VV2"
    " 73-E3GG396B-43O058YIB73A*G3W19UEBY5:PI0EGSP4*2DN43U*0CEBQ/GXQFY73CIBC:G 7376BXBJBAJ UNFMJCRN0H3PQN*E33H3OA70M3FMJIJN523.K5QZ4A+2XEN QT QTHC31M3+E32R44$28A9H0D3ZCL4JMYAZ+S-A5$XKX6T2YC 35H/ITX8GL2-LH/CJTK96L6SR9MU9RFGJA6Q3QR$P2OIC0JVLA8J3ET3:H3A+2+33U SAAUOT3TPTO4UBZIC0JKQTL*QDKBO.AI9BVYTOCFOPS4IJCOT0$89NT2V457U8+9W2KQ-7LF9-DF07U$B97JJ1D7WKP/HLIJLRKF1MFHJP7NVDEBU1J*Z222E.GJF67Z JA6B.38O4BH*HB0EGLE2%V -3O+J3.PI2G:M1SSP2Y3D38-G9C+Q:MOXVT.N3+FT9$R2+O$-KC1T/BE4NQUEJJD6/JJ8VL0XH*WRS9U$+HBR81M7WC6Q2JLNRF2M7LDBGVUUQTM0:Y7D79-SGD6KPQA.FB6:IB 5N8SXK$C2DI/VOQ1U1QN*PEM7P$E"
)


def result(outcome: str = "NEGATIVE", **changes: Any) -> dict[str, Any]:
    """A result payload as engine.results builds it (docs/interfaces.md, "Result payload")."""
    base: dict[str, Any] = {
        "schema": "ketqua/result/1",
        "id": "r-0d5c2a9e7b41f386",
        "version": 1,
        "supersedes": None,
        "issued_at": "2026-11-29T15:04:05Z",
        "outcome": outcome,
        "lab": {"id": "VN-HCM-CDC", "name": "Trung tâm Kiểm soát Bệnh tật TP. Hồ Chí Minh", "licence": "123/BYT-GPHĐ"},
        "person": {
            "full_name": "Nguyễn Thị Ánh Tuyết",
            "date_of_birth": "1990-05-12",
            "sex": "female",
            "national_id": "079190001234",
            "phone": "0901234567",
            "address": "12 Lê Lợi, Phường Bến Nghé, Quận 1",
        },
        "specimen": {
            "id": "S-000123",
            "type": "nasopharyngeal swab",
            "collected_at": "2026-11-29T08:30:00+07:00",
            "collection_site": "Trạm Y tế Phường Bến Nghé",
        },
        "test": {
            "assay": "taqpath",
            "kit": "TaqPath COVID-19 CE-IVD RT-PCR Kit",
            "method": "RT-PCR",
            "pooled": True,
            "pool_id": "P-0042",
            "design": "dorfman:10",
            "decoder": "dorfman",
        },
        "evidence": {
            "run_id": "5f1c",
            "source": "plate-017.txt",
            "instrument": "QuantStudio 5",
            "rule": "positive when >=2 of ORF1ab, N, S have Ct <= 37",
            "pools": [{"pool_id": "P-0042", "well": "A1", "outcome": "not_detected", "ct": {"N": None}}],
            "ct": {"ORF1ab": None, "N": None, "S": None},
        },
        "correction": None,
    }
    for key, value in changes.items():
        base[key] = value
    return base


def page_text(pdf: bytes) -> str:
    """The page's text layer as pypdf extracts it."""
    return pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def page_lines(pdf: bytes) -> list[str]:
    return [re.sub(r"\s+", " ", line).strip() for line in page_text(pdf).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SignerSpec, Signer, x509.Certificate]:
    """The development PKI: a picklable spec, the opened signer and the root certificate."""
    pki = ensure_development_pki(tmp_path_factory.mktemp("keys"))
    spec = SignerSpec(kind="file", key=str(pki.signer_key), certificate=str(pki.signer_cert), chain=(str(pki.ca_cert),))
    return spec, spec.open(), x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())


@pytest.fixture(scope="module")
def pades(keys: tuple[SignerSpec, Signer, x509.Certificate]) -> PadesSigner:
    return PadesSigner(keys[1])


def validate(pdf: bytes, root: x509.Certificate):  # type: ignore[no-untyped-def]
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))], allow_fetching=False
    )
    return validate_pdf_signature(PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0], context)


# -- names and diacritics -------------------------------------------------------------------------

#: Every Vietnamese tone (ngang, huyền, sắc, hỏi, ngã, nặng) on every vowel base, plus đ/Đ, in real name shapes.
NAMES = [
    "Nguyễn Văn Đức",
    "Trần Thị Hồng Nhung",
    "Lê Hoàng Phúc",
    "Phạm Thị Ngọc Ánh",
    "Huỳnh Thị Thủy Tiên",
    "Đặng Quốc Khải",
    "Bùi Thị Xuân Hương",
    "Ngô Thị Mỹ Lệ",
    "Võ Thị Ỷ Lan",
    "Dương Thị Ửng Hồng",
    "Hồ Sỹ Hữu Ưởng",
    "Đỗ Thị Ẩn Ẵng Ặc Ẳng",
    "Lương Ỳ Ỹ Ỵ Ý",
    "Tạ Ẽ Ẻ Ẹ Ễ Ệ Ể Ề Ế",
    "Mạc Ọ Ỏ Õ Ộ Ổ Ỗ Ờ Ớ Ở Ỡ Ợ",
    "Quách Ụ Ủ Ũ Ừ Ứ Ử Ữ Ự Ĩ Ỉ Ị",
]


def test_names_cover_every_tone_mark() -> None:
    """The name list exercises all five tone marks (grave, acute, hook, tilde, dot below) and đ."""
    marks = {unicodedata.name(c) for n in NAMES for c in unicodedata.normalize("NFD", n) if unicodedata.combining(c)}
    assert {"COMBINING GRAVE ACCENT", "COMBINING ACUTE ACCENT", "COMBINING HOOK ABOVE", "COMBINING TILDE",
            "COMBINING DOT BELOW"} <= marks
    assert any("đ" in n.lower() for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_name_with_diacritics_is_in_the_text_layer(name: str) -> None:
    """The extracted text contains the person's exact name, every diacritic intact."""
    person = dict(result()["person"], full_name=name)
    pdf = render_certificate(result(person=person), HC1, signer_name="Phòng Xét nghiệm", development=False)
    assert name in page_text(pdf)


VIETNAMESE_LETTERS = "".join(sorted(set(REPERTOIRE) - set(" !\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~–—’“”•…·")))


@settings(max_examples=25, deadline=None)
@given(words=st.lists(st.text(alphabet=VIETNAMESE_LETTERS, min_size=1, max_size=8), min_size=2, max_size=4))
def test_any_vietnamese_name_round_trips(words: list[str]) -> None:
    """Any name made of Vietnamese letters extracts from the PDF exactly as given."""
    name = " ".join(words)
    person = dict(result()["person"], full_name=name)
    pdf = render_certificate(result(person=person), HC1, signer_name="x", development=False)
    assert name in page_text(pdf)


def test_decomposed_name_is_printed_composed() -> None:
    """A name stored decomposed (NFD, as some platforms send it) prints in composed form."""
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Ỷ")
    pdf = render_certificate(result(person=dict(result()["person"], full_name=nfd)), HC1, signer_name="x", development=False)
    assert "Nguyễn Thị Ỷ" in page_text(pdf)


def test_name_outside_the_vietnamese_repertoire_still_renders() -> None:
    """Letters beyond the prebuilt subsets (ü, ø, ñ, ß) get a one-off template and still extract exactly."""
    name = "Jürgen Øvergaard-Muñoz Straße"
    pdf = render_certificate(result(person=dict(result()["person"], full_name=name)), HC1, signer_name="x", development=False)
    assert name in page_text(pdf)


# -- QR ---------------------------------------------------------------------------------------------


def decode_page_qr(pdf: bytes) -> zxingcpp.Result:
    page = pypdfium2.PdfDocument(pdf)[0]
    image = np.asarray(page.render(scale=2.5, grayscale=True).to_pil())
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"expected one QR code on the page, found {len(found)}"
    return found[0]


def test_qr_on_the_rendered_page_decodes_to_the_exact_hc1(keys: tuple[SignerSpec, Signer, x509.Certificate]) -> None:
    """A real HC1 (signed with the development key) drawn on the page reads back byte for byte, at ECC level Q."""
    signer = keys[1]
    payload = result("POSITIVE")
    issued = datetime(2026, 11, 29, 15, 4, 5, tzinfo=timezone.utc)
    hc1 = sign_hc1(dcc_test_entry(payload), signer, issued_at=issued, expires_at=issued + timedelta(days=30))
    pdf = render_certificate(payload, hc1, signer_name="Phòng Xét nghiệm", development=True)
    found = decode_page_qr(pdf)
    assert found.text == hc1
    assert found.ec_level == "Q"


def test_qr_uses_alphanumeric_mode_at_level_q() -> None:
    """The symbol has the version a minimal alphanumeric-mode, ECC-Q encoding needs (byte mode would be larger)."""
    import segno

    expected = segno.make_qr(HC1, error="q", mode="alphanumeric", boost_error=False)
    assert qr_modules(HC1).shape[0] == expected.symbol_size(border=0)[0]


BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _zxing_default(text: str) -> np.ndarray:
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="Q")
    return np.asarray(symbol.to_image(scale=1, add_quiet_zones=False)) < 128


@settings(max_examples=40, deadline=None)
@given(body=st.text(alphabet=BASE45, min_size=0, max_size=900))
def test_mask_choice_gives_the_same_symbol_as_zxing(body: str) -> None:
    """The in-place mask choice yields, module for module, the symbol zxing-cpp builds when it tries all eight masks."""
    text = "HC1:" + body
    ours = qr_modules(text)
    assert ours.shape == _zxing_default(text).shape
    assert (ours == _zxing_default(text)).all()


def test_symbol_reads_back_with_its_mask() -> None:
    """The chosen symbol, drawn with a quiet zone, decodes to the text at level Q."""
    modules = qr_modules(HC1)
    image = np.pad(np.where(modules, 0, 255).astype(np.uint8), 4, constant_values=255).repeat(3, 0).repeat(3, 1)
    found = zxingcpp.read_barcode(image)
    assert found is not None and found.text == HC1 and found.ec_level == "Q"


def test_qr_is_one_image_not_one_operator_per_module() -> None:
    """The page draws the QR with a single image XObject."""
    reader = pypdf.PdfReader(io.BytesIO(render_certificate(result(), HC1, signer_name="x", development=False)))
    xobjects = reader.pages[0]["/Resources"]["/XObject"]
    assert list(xobjects) == ["/QR"]
    image = xobjects["/QR"].get_object()
    assert image["/BitsPerComponent"] == 1 and image["/Width"] == qr_modules(HC1).shape[1]


def test_oversize_hc1_is_refused_with_its_length() -> None:
    """A payload beyond a version-40 QR at level Q is refused, naming its length, instead of a zxing error."""
    with pytest.raises(SigningError, match="5004 characters"):
        qr_modules("HC1:" + "A" * 5000)


def test_empty_hc1_is_refused() -> None:
    """A certificate without an HC1 payload is refused: the QR is what verifiers scan."""
    with pytest.raises(SigningError, match="empty HC1"):
        render_certificate(result(), "", signer_name="x", development=False)


# -- signature --------------------------------------------------------------------------------------


def test_signed_certificate_validates_in_pyhanko(
    keys: tuple[SignerSpec, Signer, x509.Certificate], pades: PadesSigner
) -> None:
    """render + sign in one pass gives a PAdES signature pyHanko reports intact, valid and trusted."""
    pdf = sign_certificate(result("POSITIVE"), HC1, pades)
    status = validate(pdf, keys[2])
    assert status.intact and status.valid and status.trusted and status.coverage.name == "ENTIRE_FILE"
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"


@pytest.fixture(scope="module")
def signed_certificate(pades: PadesSigner) -> tuple[bytes, list[int]]:
    """One signed certificate and its /ByteRange."""
    pdf = sign_certificate(result("POSITIVE"), HC1, pades)
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    return pdf, [int(x) for x in sig.sig_object["/ByteRange"]]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(min_value=0.0, max_value=1.0, exclude_max=True), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_a_signed_certificate_breaks_validation(
    keys: tuple[SignerSpec, Signer, x509.Certificate], signed_certificate: tuple[bytes, list[int]], where: float, flip: int
) -> None:
    """Changing any one byte of a signed certificate outside /Contents (template, page, QR, signature dictionary) fails validation."""
    pdf, (start1, length1, start2, length2) = signed_certificate
    offset = int(where * (length1 + length2))
    position = start1 + offset if offset < length1 else start2 + (offset - length1)
    tampered = bytearray(pdf)
    tampered[position] ^= flip
    try:
        status = validate(bytes(tampered), keys[2])
    except Exception:
        return  # the change broke the PDF structure: nothing validates
    assert not (status.intact and status.valid), f"byte {position} changed but the certificate still validates"


def test_unsigned_render_can_be_signed_later(
    keys: tuple[SignerSpec, Signer, x509.Certificate], pades: PadesSigner
) -> None:
    """render_certificate's unsigned PDF signs with PadesSigner.sign and validates."""
    pdf = render_certificate(result(), HC1, signer_name="x", development=True)
    assert validate(pades.sign(pdf), keys[2]).bottom_line


def test_signed_certificate_reads_cleanly_in_strict_mode(pades: PadesSigner, caplog: pytest.LogCaptureFixture) -> None:
    """pypdf in strict mode reads a signed certificate without repairing or warning about its cross-references."""
    pdf = sign_certificate(result(), HC1, pades)
    with caplog.at_level("WARNING", logger="pypdf"):
        reader = pypdf.PdfReader(io.BytesIO(pdf), strict=True)
        assert "Nguyễn Thị Ánh Tuyết" in reader.pages[0].extract_text()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_rendering_is_deterministic() -> None:
    """The same result renders to the same bytes (replays and re-drops change nothing)."""
    one = render_certificate(result("POSITIVE"), HC1, signer_name="x", development=False)
    assert one == render_certificate(result("POSITIVE"), HC1, signer_name="x", development=False)


def test_document_information_names_the_result() -> None:
    """The PDF's document information carries the result id, version, lab and the issue time (not the render time)."""
    meta = pypdf.PdfReader(io.BytesIO(render_certificate(result("POSITIVE"), HC1, signer_name="x", development=False))).metadata
    assert meta.title.endswith("r-0d5c2a9e7b41f386 v1")
    assert meta.author == "Trung tâm Kiểm soát Bệnh tật TP. Hồ Chí Minh"
    assert meta.creation_date == datetime(2026, 11, 29, 15, 4, 5, tzinfo=timezone.utc)
    root = pypdf.PdfReader(io.BytesIO(render_certificate(result(), HC1, signer_name="x", development=False))).trailer["/Root"]
    assert root["/Lang"] == "vi-VN" and root["/Version"] == "/1.7"


def test_development_key_is_said_visibly(pades: PadesSigner) -> None:
    """A certificate signed by a development key carries the DEVELOPMENT banner and watermark; a production one does not."""
    assert pades.signer.development
    text = page_text(sign_certificate(result(), HC1, pades))
    assert "DEVELOPMENT KEY – NOT A VALID CERTIFICATE" in text
    assert "KHÓA PHÁT TRIỂN" in text
    production = page_text(render_certificate(result(), HC1, signer_name="x", development=False))
    assert "DEVELOPMENT" not in production and "PHÁT TRIỂN" not in production


def test_identifiers_are_masked() -> None:
    """The national ID shows only its last 4 digits and the phone only its last 3."""
    text = page_text(render_certificate(result(), HC1, signer_name="x", development=False))
    assert "079190001234" not in text and "********1234" in text
    assert "0901234567" not in text and "*******567" in text
    assert mask_national_id("123") == "**3"
    assert mask_phone("+84 901 234 567") == "+** *** *** 567"


def test_retest_outcome_gets_no_certificate() -> None:
    """Only POSITIVE, NEGATIVE and INCONCLUSIVE are signed results; RETEST is refused with a reason."""
    with pytest.raises(SigningError, match="only POSITIVE, NEGATIVE and INCONCLUSIVE"):
        render_certificate(result("RETEST"), HC1, signer_name="x", development=False)


# -- golden text per certificate type --------------------------------------------------------------------

STATIC = [
    "PHIẾU KẾT QUẢ XÉT NGHIỆM SARS-CoV-2",
    "SARS-CoV-2 RT-PCR TEST RESULT CERTIFICATE",
    "NGƯỜI ĐƯỢC XÉT NGHIỆM / PERSON TESTED",
    "Họ và tên / Full name",
    "Ngày sinh / Date of birth",
    "Giới tính / Sex",
    "Số CCCD/CMND / National ID",
    "Điện thoại / Phone",
    "MẪU BỆNH PHẨM / SPECIMEN",
    "Mã mẫu / Specimen ID",
    "Loại mẫu / Specimen type",
    "Thời gian lấy mẫu / Collected",
    "Nơi lấy mẫu / Collection site",
    "XÉT NGHIỆM / TEST",
    "Sinh phẩm / Assay (kit)",
    "Phương pháp / Method",
    "Hình thức / Testing mode",
    "Dịch tỵ hầu / Nasopharyngeal swab",
    "RT-PCR (real-time reverse-transcription PCR)",
    "KẾT QUẢ / RESULT",
    "PHÁT HÀNH / ISSUE",
    "Ngày trả kết quả / Issued",
    "Mã kết quả / Result ID",
    "Phiên bản / Version",
    "Người ký / Signed by",
    "Quét mã QR để xác minh / Scan to verify",
    "Chứng nhận này được ký số theo chuẩn PAdES (ETSI EN 319 142). Kiểm tra chữ ký bằng trình đọc PDF, hoặc: ketqua verify <tệp.pdf>",
    "This certificate carries a PAdES digital signature. Check it in a PDF reader, or run: ketqua verify <file.pdf>",
    "Mã QR chứa chứng nhận xét nghiệm định dạng EU DCC (HC1) / The QR code holds an EU-DCC-format test certificate (HC1).",
]
HEADER = ["Trung tâm Kiểm soát Bệnh tật TP. Hồ Chí Minh", "Giấy phép / Licence: 123/BYT-GPHĐ"]
PERSON = ["Nguyễn Thị Ánh Tuyết", "12/05/1990", "Nữ / Female", "********1234", "*******567"]
SPECIMEN = ["S-000123", "29/11/2026 08:30 (GMT+7)", "Trạm Y tế Phường Bến Nghé"]
POOLED = ["TaqPath COVID-19 CE-IVD RT-PCR Kit (taqpath)", "Gộp mẫu / Pooled — mã gộp / pool P-0042 (dorfman:10)"]
ISSUE = ["29/11/2026 22:04 (GMT+7)", "r-0d5c2a9e7b41f386"]


def golden(pdf: bytes) -> list[str]:
    """Page lines minus the static template lines (checked once, separately)."""
    return [line for line in page_lines(pdf) if line not in STATIC]


def test_golden_static_text() -> None:
    """Every constant label, heading and the verification hint appear, in reading order."""
    lines = page_lines(render_certificate(result(), HC1, signer_name="x", development=False))
    assert [line for line in lines if line in STATIC] == STATIC


def test_golden_negative() -> None:
    """A negative pooled result: person, specimen, test, ÂM TÍNH / NEGATIVE, no Ct line, version 1."""
    pdf = render_certificate(result("NEGATIVE"), HC1, signer_name="Phòng Xét nghiệm HCDC", development=False)
    assert golden(pdf) == [
        *HEADER, *PERSON, *SPECIMEN, *POOLED,
        "ÂM TÍNH / NEGATIVE",
        *ISSUE, "1", "Phòng Xét nghiệm HCDC",
    ]


def test_golden_positive_with_ct() -> None:
    """A positive individual result: DƯƠNG TÍNH / POSITIVE with its Ct values per target (cycles, 2 decimals)."""
    payload = result("POSITIVE")
    payload["test"] = dict(payload["test"], pooled=False, pool_id=None, design=None)
    payload["evidence"] = dict(payload["evidence"], ct={"ORF1ab": 24.312, "N": 23.0, "S": None})
    pdf = render_certificate(payload, HC1, signer_name="Phòng Xét nghiệm HCDC", development=False)
    assert golden(pdf) == [
        *HEADER, *PERSON, *SPECIMEN,
        "TaqPath COVID-19 CE-IVD RT-PCR Kit (taqpath)", "Mẫu đơn / Individual",
        "DƯƠNG TÍNH / POSITIVE",
        "Giá trị Ct / Ct values: N 23.00 · ORF1ab 24.31 · S —",
        *ISSUE, "1", "Phòng Xét nghiệm HCDC",
    ]


def test_golden_inconclusive() -> None:
    """An inconclusive result: KHÔNG XÁC ĐỊNH / INCONCLUSIVE, the re-collection hint, no Ct values."""
    payload = result("INCONCLUSIVE")
    payload["evidence"] = dict(payload["evidence"], ct={"N": 38.5})
    pdf = render_certificate(payload, HC1, signer_name="Phòng Xét nghiệm HCDC", development=False)
    assert golden(pdf) == [
        *HEADER, *PERSON, *SPECIMEN, *POOLED,
        "KHÔNG XÁC ĐỊNH / INCONCLUSIVE",
        "Cần lấy lại mẫu để xét nghiệm lại / A new swab is needed for a repeat test",
        *ISSUE, "1", "Phòng Xét nghiệm HCDC",
    ]


def test_golden_corrected_version() -> None:
    """A correction: version 2 names the version it supersedes and the reason, with the corrected birth date."""
    payload = result("NEGATIVE")
    payload.update(
        version=2,
        supersedes={"id": "r-0d5c2a9e7b41f386", "version": 1},
        correction={"reason": "Sửa ngày sinh theo CCCD"},
        person=dict(payload["person"], date_of_birth="1991-05-12"),
    )
    pdf = render_certificate(payload, HC1, signer_name="Phòng Xét nghiệm HCDC", development=False)
    person = [*PERSON]
    person[1] = "12/05/1991"
    assert golden(pdf) == [
        *HEADER, *person, *SPECIMEN, *POOLED,
        "ÂM TÍNH / NEGATIVE",
        *ISSUE, "2 — thay thế / supersedes v1", "Phòng Xét nghiệm HCDC",
        "Lý do đính chính / Correction: Sửa ngày sinh theo CCCD",
    ]


def test_long_correction_reason_wraps_without_losing_words() -> None:
    """A long correction reason is wrapped onto several lines beside the QR, every word still in the text layer."""
    reason = "corrected manifest PL261129-00001-manifest-v2.csv: full_name, date_of_birth, phone changed"
    payload = result("NEGATIVE", version=2, supersedes={"id": "r-0d5c2a9e7b41f386", "version": 1},
                     correction={"reason": reason})
    lines = page_lines(render_certificate(payload, HC1, signer_name="x", development=False))
    start = next(i for i, line in enumerate(lines) if line.startswith("Lý do đính chính / Correction:"))
    assert " ".join(lines[start:start + 3]) == f"Lý do đính chính / Correction: {reason}"


# -- the writer ------------------------------------------------------------------------------------------


def _items(n: int) -> list[tuple[dict[str, Any], str]]:
    items = []
    for i in range(n):
        payload = copy.deepcopy(result("POSITIVE" if i % 7 == 0 else "NEGATIVE"))
        payload["id"] = f"r-{i:06d}"
        payload["person"]["full_name"] = NAMES[i % len(NAMES)]
        items.append((payload, HC1))
    return items


def test_writer_signs_a_batch_on_worker_processes(
    keys: tuple[SignerSpec, Signer, x509.Certificate], tmp_path: Path
) -> None:
    """CertificateWriter with 2 workers writes one signed, valid PDF per item, paths in input order."""
    items = _items(40)
    with CertificateWriter(keys[0], tmp_path, workers=2, batch_size=8) as writer:
        paths = writer.write(items)
    assert paths == [tmp_path / certificate_filename(r) for r, _ in items]
    assert all(p.exists() for p in paths)
    assert not list(tmp_path.glob("*.tmp"))
    for index in (0, 17, 39):
        pdf = paths[index].read_bytes()
        assert validate(pdf, keys[2]).bottom_line
        assert items[index][0]["person"]["full_name"] in page_text(pdf)


class DyingSignerSpec:
    """A signer spec whose worker process dies while opening the key (a crashed token driver)."""

    def open(self) -> Signer:
        import os

        os._exit(3)


def test_writer_reports_a_dead_worker(tmp_path: Path) -> None:
    """A worker process that dies surfaces as SigningError, and the writer can start afresh."""
    writer = CertificateWriter(DyingSignerSpec(), tmp_path, workers=2)  # type: ignore[arg-type]
    with pytest.raises(SigningError, match="worker process stopped unexpectedly"):
        writer.write(_items(40))
    assert writer._pool is None
    writer.close()


def test_writer_in_process(keys: tuple[SignerSpec, Signer, x509.Certificate], tmp_path: Path) -> None:
    """With one worker the writer signs in the calling process and the files validate."""
    writer = CertificateWriter(keys[0], tmp_path, workers=1)
    paths = writer.write(_items(3))
    assert [p.name for p in paths] == ["r-000000-v1.pdf", "r-000001-v1.pdf", "r-000002-v1.pdf"]
    assert validate(paths[1].read_bytes(), keys[2]).bottom_line


def test_writer_adds_timestamps_when_a_tsa_is_configured(tmp_path: Path) -> None:
    """With the development TSA the writer's certificates are PAdES B-T: pyHanko validates the embedded timestamp."""
    import pickle

    from signing.pades import development_timestamper

    pki = ensure_development_pki(tmp_path / "keys")
    spec = SignerSpec(kind="file", key=str(pki.signer_key), certificate=str(pki.signer_cert), chain=(str(pki.ca_cert),))
    tsa = development_timestamper(pki.tsa_cert.read_bytes(), pki.tsa_key.read_bytes(), pki.ca_cert.read_bytes())
    tsa = pickle.loads(pickle.dumps(tsa))  # what the worker processes receive
    paths = CertificateWriter(spec, tmp_path / "out", workers=1, timestamper=tsa).write(_items(2))
    status = validate(paths[0].read_bytes(), x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
    assert status.bottom_line
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted


def test_certificate_signed_on_a_pkcs11_token(softhsm_signer) -> None:  # noqa: F811
    """A certificate signed with a SoftHSM2 key (never leaving the token) validates in pyHanko."""
    signer = softhsm_signer.spec.open()
    pdf = sign_certificate(result("POSITIVE"), HC1, PadesSigner(signer))
    assert validate(pdf, x509.load_pem_x509_certificate(softhsm_signer.ca_pem.read_bytes())).bottom_line
    assert "Nguyễn Thị Ánh Tuyết" in page_text(pdf)


@pytest.mark.slow
def test_memory_stays_flat_over_many_certificates(pades: PadesSigner) -> None:
    """Signing thousands of certificates in one process does not grow its memory (templates are reused, nothing cached per result)."""
    import gc
    import resource

    items = _items(50)
    for payload, hc1 in items:
        sign_certificate(payload, hc1, pades)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for round_ in range(30):
        for payload, hc1 in items:
            sign_certificate(payload, hc1, pades)
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 16 * 1024, f"max RSS grew by {(after - before) / 1024:.1f} MiB over 1500 certificates"


# -- transparency log -----------------------------------------------------------------------------


def test_the_log_index_is_printed_when_the_ledger_gives_it() -> None:
    """The ledger row's log index (beside the payload, not in it) is one line; without it there is none."""
    with_index = page_lines(render_certificate(result(log_index=41), HC1, signer_name="ketqua DEV", development=False))
    assert "Nhật ký minh bạch / Transparency log: #41" in with_index
    without = page_text(render_certificate(result(), HC1, signer_name="ketqua DEV", development=False))
    assert "Transparency log" not in without


def test_the_log_line_stays_clear_of_a_long_correction() -> None:
    """A corrected version with a four-line reason still shows both the reason's last words and the log line."""
    reason = "Sửa ngày sinh theo CCCD; " * 8 + "cuối cùng"
    lines = page_lines(render_certificate(
        result(version=2, supersedes={"id": "r-0d5c2a9e7b41f386", "version": 1}, correction={"reason": reason}, log_index=7),
        HC1, signer_name="ketqua DEV", development=False,
    ))
    assert "Nhật ký minh bạch / Transparency log: #7" in lines
    assert any(line.endswith("cuối cùng") for line in lines)
