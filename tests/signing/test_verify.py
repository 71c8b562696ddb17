"""The offline verifier on PDFs and QR images, and the ``ketqua verify`` / ``ketqua keys`` commands."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path

import pytest
import segno
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from engine.cli.main import main
from engine.datadir import DataDir
from engine.errors import VerificationError
from signing.canonical import canonical_json
from signing.dcc import test_entry as dcc_test_entry
from signing.hc1 import sign_hc1
from signing.jws import sign_compact
from engine.results.signer import load_signer_spec
from signing.pki import ensure_development_pki
from signing.verify import verify_pdf
from tests import shared

VECTORS = shared.VECTORS
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
RESULT = {
    "schema": "ketqua/result/1", "id": "hcm02-S7-11aa", "version": 1, "supersedes": None,
    "issued_at": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "NEGATIVE",
    "lab": {"id": "HCM-02", "name": "Viện Pasteur TP.HCM", "licence": "L-2"},
    "person": {"full_name": "Lê Thị Hồng", "date_of_birth": "1975-12-01", "sex": "F", "national_id": None,
               "phone": None, "address": None},
    "specimen": {"id": "S7", "type": "nasopharyngeal swab", "collected_at": "2026-11-29T07:00:00+07:00",
                 "collection_site": "Bệnh viện Quận 1"},
    "test": {"assay": "TaqPath COVID-19 Combo Kit", "kit": "TaqPath", "method": "RT-PCR", "pooled": False,
             "pool_id": None, "design": None, "decoder": "single"},
    "evidence": {}, "correction": None,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A data folder whose development PKI the CLI finds by default."""
    data = DataDir.at(tmp_path_factory.mktemp("verify"))
    ensure_development_pki(data.keys)
    return data


@pytest.fixture(scope="module")
def signer(data: DataDir):
    """The data folder's development signer."""
    return load_signer_spec(data).open()


@pytest.fixture(scope="module")
def hc1(signer) -> str:
    """An HC1 string for RESULT, valid for 3 days from now."""
    return sign_hc1(dcc_test_entry(RESULT), signer, issued_at=NOW, expires_at=NOW + dt.timedelta(days=3))


def _pdf_with_qr(text: str) -> bytes:
    """A one-page PDF with ``text`` as a QR code (reportlab's own QR encoder)."""
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=0)
    page.drawString(72, 780, "ketqua verifier test page")
    widget = QrCodeWidget(text, barLevel="Q")
    x0, y0, x1, y1 = widget.getBounds()
    size = 260
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, page, 150, 400)
    page.showPage()
    page.save()
    return out.getvalue()


def _pyhanko_sign(pdf: bytes, keys: Path) -> bytes:
    """PAdES-sign with pyHanko's own signer (independent of signing.pades)."""
    signer = signers.SimpleSigner.load(str(keys / "signer.key"), str(keys / "signer.pem"), ca_chain_files=(str(keys / "ca.pem"),))
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)),
        signers.PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def signed_pdf(data: DataDir, hc1: str) -> bytes:
    """A PDF with the HC1 QR, PAdES-signed by the development signer."""
    return _pyhanko_sign(_pdf_with_qr(hc1), data.keys)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_verify_pdf_report(signed_pdf: bytes, data: DataDir) -> None:
    """pyHanko's validator accepts the signed PDF against the CA; the report names the signer and DEVELOPMENT."""
    report = verify_pdf(signed_pdf, [data.keys / "ca.pem"])
    assert report.kind == "pdf" and report.development
    assert "DEVELOPMENT result signer" in report.signer and report.signed_at is not None


def test_verify_pdf_rejects_tampering_and_other_roots(signed_pdf: bytes, data: DataDir, tmp_path: Path) -> None:
    """A changed byte inside the signed range fails; another CA as trust root fails as untrusted; unsigned fails."""
    index = signed_pdf.index(b"ketqua verifier test page")
    tampered = signed_pdf[:index] + b"K" + signed_pdf[index + 1:]
    with pytest.raises(VerificationError) as info:
        verify_pdf(tampered, [data.keys / "ca.pem"])
    assert info.value.reason == "bad-signature"
    other = ensure_development_pki(tmp_path / "other")
    with pytest.raises(VerificationError) as info:
        verify_pdf(signed_pdf, [other.ca_cert])
    assert info.value.reason == "untrusted-chain"
    with pytest.raises(VerificationError) as info:
        verify_pdf(_pdf_with_qr("HC1:X"), [data.keys / "ca.pem"])
    assert info.value.reason == "no-signature"


def test_cli_verifies_pdf_signature_and_its_qr(signed_pdf: bytes, data: DataDir, tmp_path: Path, capsys) -> None:
    """``ketqua verify cert.pdf`` checks the PAdES signature and the HC1 QR on page 1; exit 0."""
    path = tmp_path / "cert.pdf"
    path.write_bytes(signed_pdf)
    status, out = _run(capsys, "verify", "--data", str(data.root), str(path))
    assert status == 0, out
    assert "OK PDF" in out and "OK HC1" in out and "NOT DETECTED" in out and "LE<<THI<HONG" in out


def test_cli_verifies_product_certificate(data: DataDir, signer, hc1: str, tmp_path: Path, capsys) -> None:
    """A certificate rendered and PAdES-signed by the product (engine.certificates + signing.pades) verifies end to end."""
    from engine.certificates.writer import render_certificate
    from signing.pades import PadesSigner

    pdf = PadesSigner(signer).sign(render_certificate(RESULT, hc1, signer_name="Viện Pasteur", development=True))
    path = tmp_path / "product.pdf"
    path.write_bytes(pdf)
    status, out = _run(capsys, "verify", "--data", str(data.root), "--json", str(path))
    assert status == 0, out
    reports = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in reports] == ["pdf", "hc1"] and all(r["valid"] for r in reports)


def test_cli_tampered_pdf_exits_1(signed_pdf: bytes, data: DataDir, tmp_path: Path, capsys) -> None:
    """A tampered PDF makes ``ketqua verify`` print the reason and exit 1."""
    index = signed_pdf.index(b"ketqua verifier test page")
    path = tmp_path / "bad.pdf"
    path.write_bytes(signed_pdf[:index] + b"X" + signed_pdf[index + 1:])
    status, out = _run(capsys, "verify", "--data", str(data.root), str(path))
    assert status == 1 and "INVALID PDF (bad-signature)" in out


def test_cli_verifies_qr_image(data: DataDir, hc1: str, tmp_path: Path, capsys) -> None:
    """A PNG photo-like image of the QR is decoded with zxing-cpp and verified; exit 0."""
    path = tmp_path / "qr.png"
    segno.make(hc1, error="q", micro=False).save(str(path), scale=4, border=4)
    status, out = _run(capsys, "verify", "--data", str(data.root), str(path))
    assert status == 0, out
    assert "OK HC1" in out


def test_cli_hc1_text_and_expiry(data: DataDir, hc1: str, capsys) -> None:
    """An HC1 string verifies now (exit 0) and is reported expired after its exp (exit 1)."""
    status, out = _run(capsys, "verify", "--data", str(data.root), hc1)
    assert status == 0 and "OK HC1" in out and "DEVELOPMENT" in out
    later = (NOW + dt.timedelta(days=4)).isoformat()
    status, out = _run(capsys, "verify", "--data", str(data.root), "--at", later, hc1)
    assert status == 1 and "(expired)" in out


def test_cli_result_json_with_jws_and_hc1(data: DataDir, signer, hc1: str, tmp_path: Path, capsys) -> None:
    """A ``results show --json`` object verifies its JWS against its payload, and its HC1; a changed payload fails."""
    payload = canonical_json(RESULT).decode()
    obj = {"id": RESULT["id"], "version": 1, "payload": payload, "jws": sign_compact(payload.encode(), signer), "hc1": hc1}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(obj, ensure_ascii=False))
    status, out = _run(capsys, "verify", "--data", str(data.root), str(path))
    assert status == 0, out
    assert "OK JWS" in out and "OK HC1" in out and "NEGATIVE for Lê Thị Hồng" in out
    obj["payload"] = payload.replace("NEGATIVE", "POSITIVE")
    path.write_text(json.dumps(obj, ensure_ascii=False))
    status, out = _run(capsys, "verify", "--data", str(data.root), str(path))
    assert status == 1 and "payload-mismatch" in out


def test_cli_dcc_vector_with_explicit_trust(tmp_path: Path, capsys) -> None:
    """A DCC test vector verifies with --trust set to its DSC and --at its validation clock."""
    vector = json.loads((VECTORS / "dcc-PL-1.3.0-4-pcr-test-valid-es256.json").read_text(encoding="utf-8"))
    dsc = tmp_path / "dsc.der"
    dsc.write_bytes(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
    clock = vector["TESTCTX"]["VALIDATIONCLOCK"]
    status, out = _run(capsys, "verify", "--data", str(tmp_path / "none"), "--trust", str(dsc), "--at", clock, vector["PREFIX"])
    assert status == 0, out
    assert "Rogaliński-Król" in out


def test_cli_unusable_input_exits_2(data: DataDir, tmp_path: Path, capsys) -> None:
    """Text that is no HC1/JWS, an image without a QR, or missing trust roots exit 2."""
    status, _ = _run(capsys, "verify", "--data", str(data.root), "certainly not a signature")
    assert status == 2
    blank = tmp_path / "blank.png"
    segno.make("hello", micro=False).save(str(blank), scale=1, border=0, dark="white")
    status, out = _run(capsys, "verify", "--data", str(data.root), str(blank))
    assert status == 2 and "no health-certificate QR" in out
    status, out = _run(capsys, "verify", "--data", str(tmp_path / "empty"), "HC1:ABC")
    assert status == 2 and "no trust roots" in out


def test_cli_keys_init_and_show(tmp_path: Path, capsys) -> None:
    """``keys init`` creates the PKI once; ``keys show`` prints chain, fingerprints and DEVELOPMENT, no key material."""
    root = tmp_path / "kq"
    status, out = _run(capsys, "keys", "init", "--data", str(root))
    assert status == 0 and "created" in out
    status, out = _run(capsys, "keys", "--data", str(root), "init")
    assert status == 0 and "already present" in out
    status, out = _run(capsys, "keys", "show", "--data", str(root), "--json")
    assert status == 0
    summary = json.loads(out)
    roles = [c["role"] for c in summary["certificates"]]
    assert roles == ["signer", "root", "tsa"] and summary["development"] is True
    signer = summary["certificates"][0]
    assert signer["key_usage"] == ["digitalSignature", "nonRepudiation"] and len(signer["sha256"]) == 64
    status, text = _run(capsys, "keys", "show", "--data", str(root))
    key_body = (root / "keys" / "signer.key").read_text().splitlines()[1]
    assert "PRIVATE KEY" not in text and key_body not in text and signer["sha256"] in text


def test_cli_pdf_qr_verifies_with_only_the_root_ca(signed_pdf: bytes, data: DataDir, tmp_path: Path, capsys) -> None:
    """With only ``--trust ca.pem`` (no data folder holding signer.pem), the QR is checked against the PDF's own validated signer."""
    path = tmp_path / "cert.pdf"
    path.write_bytes(signed_pdf)
    elsewhere = tmp_path / "no-data-folder"
    status, out = _run(capsys, "verify", "--data", str(elsewhere), "--trust", str(data.keys / "ca.pem"), str(path))
    assert status == 0, out
    assert "OK PDF" in out and "OK HC1" in out


def _jwks_file(path: Path, signer) -> Path:
    """The JWK Set a lab publishes at /v1/keys for ``signer``, saved the way a relying party would."""
    from signing.jws import jwks

    path.write_text(json.dumps(jwks(signer)), encoding="utf-8")
    return path


def test_cli_trusts_a_published_jwks(signed_pdf: bytes, signer, hc1: str, tmp_path: Path, capsys) -> None:
    """``--trust keys.json`` (the JWKS of /v1/keys) verifies a result's JWS, its HC1 and a signed certificate PDF, with no CA at hand."""
    trust = _jwks_file(tmp_path / "keys.json", signer)
    elsewhere = str(tmp_path / "no-data-folder")
    payload = canonical_json(RESULT).decode()
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"payload": payload, "jws": sign_compact(payload.encode(), signer), "hc1": hc1}), encoding="utf-8")
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), str(result))
    assert status == 0, out
    assert "OK JWS" in out and "OK HC1" in out and "DEVELOPMENT result signer" in out
    pdf = tmp_path / "cert.pdf"
    pdf.write_bytes(signed_pdf)
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), str(pdf))
    assert status == 0, out
    assert "OK PDF" in out and "OK HC1" in out


def test_cli_jwks_of_another_lab_does_not_verify(signed_pdf: bytes, hc1: str, tmp_path: Path, capsys) -> None:
    """A JWKS published by another signer is no trust for this lab's HC1 or PDF: exit 1 with the reason."""
    other = load_signer_spec(DataDir.at(tmp_path / "other")).open()
    trust = str(_jwks_file(tmp_path / "other.json", other))
    elsewhere = str(tmp_path / "no-data-folder")
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", trust, hc1)
    assert status == 1 and "(unknown-kid)" in out
    pdf = tmp_path / "cert.pdf"
    pdf.write_bytes(signed_pdf)
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", trust, str(pdf))
    assert status == 1 and "INVALID PDF (untrusted-chain)" in out


def test_cli_jwks_key_without_certificate_checks_a_jws_only(signer, hc1: str, tmp_path: Path, capsys) -> None:
    """A JWKS key without x5c verifies a JWS by its kid but cannot vouch for an HC1; a JWK whose x5c holds another key is refused (exit 2)."""
    from signing.jws import jwks

    published = jwks(signer)
    bare = {"keys": [{k: v for k, v in published["keys"][0].items() if k not in ("x5c", "x5t#S256")}]}
    trust = tmp_path / "bare.json"
    trust.write_text(json.dumps(bare), encoding="utf-8")
    elsewhere = str(tmp_path / "no-data-folder")
    payload = canonical_json(RESULT)
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), sign_compact(payload, signer))
    assert status == 0 and "OK JWS" in out, out
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), hc1)
    assert status == 1, out
    other = load_signer_spec(DataDir.at(tmp_path / "other")).open()
    forged = dict(published["keys"][0], x5c=jwks(other)["keys"][0]["x5c"])
    trust.write_text(json.dumps({"keys": [forged]}), encoding="utf-8")
    status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), hc1)
    assert status == 2 and "another key" in out
    for text, why in (('{"keys": []}', "not a JWK Set"), ("{not json", "not valid JSON"), ('{"kty": "EC"}', "not a JWK Set")):
        trust.write_text(text, encoding="utf-8")
        status, out = _run(capsys, "verify", "--data", elsewhere, "--trust", str(trust), hc1)
        assert status == 2 and f"{trust}: {why}" in out
