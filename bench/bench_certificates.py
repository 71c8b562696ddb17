"""Signed certificate PDFs (render + QR + PAdES) vs the naive reportlab + segno + pyHanko way.

Candidate: ``engine.certificates`` — ``render_certificate`` + ``PadesSigner.sign``
in this process (one core), and ``CertificateWriter(spec, dir).write(items)``,
which renders and signs whole batches in a process pool sized to the cores
(its throughput per core divides by that pool size).

Baseline, one core: what one would write first — per result a reportlab
canvas with the embedded DejaVu Sans font (registered once per process, as
anyone would), the person, specimen and result text, the HC1 string as a QR
drawn by segno (ECC Q) into a PNG image, then pyHanko ``sign_pdf`` (PAdES).
Aim (issue 6): ≥ 300 signed certificates/s/core; a 3,840-specimen plate's
certificates in under 15 s on 2 cores.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from typing import Any

from bench import common, workloads
from bench.bench_pades import check_valid, pyhanko_sign, pyhanko_signer
from bench.runner import Context, Figure, compare, stage

_FONT = "BenchDejaVuSans"


def _register_font() -> None:
    import matplotlib
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if _FONT not in pdfmetrics.getRegisteredFontNames():
        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        pdfmetrics.registerFont(TTFont(_FONT, path))


def naive_certificate(result: dict[str, Any], hc1: str, ph_signer: Any) -> bytes:
    """One signed certificate the straightforward way (the baseline)."""
    import segno
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    _register_font()
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont(_FONT, 16)
    c.drawString(50, 790, "KẾT QUẢ XÉT NGHIỆM SARS-CoV-2 / SARS-CoV-2 TEST RESULT")
    c.setFont(_FONT, 11)
    person, specimen, test = result["person"], result["specimen"], result["test"]
    lines = [
        f"Phòng xét nghiệm / Laboratory: {result['lab']['name']} ({result['lab']['licence']})",
        f"Họ tên / Name: {person['full_name']}",
        f"Ngày sinh / Date of birth: {person['date_of_birth']}   Giới tính / Sex: {person['sex']}",
        f"CCCD / ID: ********{(person.get('national_id') or '')[-4:]}",
        f"Mẫu / Specimen: {specimen['id']}  lấy lúc / collected {specimen['collected_at']} tại / at {specimen['collection_site']}",
        f"Xét nghiệm / Test: {test['assay']} ({test['method']}), gộp mẫu / pooled: {test['pooled']} {test.get('pool_id') or ''}",
        f"Mã kết quả / Result id: {result['id']} v{result['version']}   Cấp lúc / Issued: {result['issued_at']}",
    ]
    y = 750
    for line in lines:
        c.drawString(50, y, line)
        y -= 18
    c.setFont(_FONT, 28)
    c.drawString(50, y - 30, "ÂM TÍNH / NEGATIVE" if result["outcome"] == "NEGATIVE" else "DƯƠNG TÍNH / POSITIVE")
    png = io.BytesIO()
    segno.make(hc1, error="q", boost_error=False).save(png, kind="png", scale=3, border=4)
    png.seek(0)
    c.drawImage(ImageReader(png), 50, 200, width=220, height=220)
    c.setFont(_FONT, 8)
    c.drawString(50, 185, "Quét mã QR để xác minh / Scan the QR code to verify (DEVELOPMENT)")
    c.showPage()
    c.save()
    return pyhanko_sign(buf.getvalue(), ph_signer)


def _items(ctx: Context, n: int) -> list[tuple[dict[str, Any], str]]:
    from engine.results.signed import expiry, parse_instant
    from signing.dcc import test_entry
    from signing.hc1 import sign_hc1

    k = common.keys(ctx)
    payloads = ctx.cached(f"cert-payloads-{n}", lambda: workloads.result_payloads(n, ctx.seed + 7))
    issued = parse_instant(payloads[0]["issued_at"])
    expires = expiry(payloads[0]["issued_at"], 30)
    return [(p, sign_hc1(test_entry(p), k.signer, issued_at=issued, expires_at=expires)) for p in payloads]


@stage(
    "certificates",
    "signed certificate PDFs (render + QR + PAdES) vs naive reportlab + segno + pyHanko",
    requires=("engine.certificates.writer", "signing.pades", "signing.hc1", "signing.dcc", "engine.results.signed", "engine.demo"),
    order=50,
)
def run(ctx: Context) -> list[Figure]:
    from engine.certificates.writer import CertificateWriter, render_certificate
    from signing.pades import PadesSigner

    k = common.keys(ctx)
    n = int(ctx.scale(64, 600))
    n_naive = int(ctx.scale(4, 20))
    items = _items(ctx, n)
    ours = PadesSigner(k.signer)
    theirs = pyhanko_signer(k)
    name = k.signer.certificate.subject.rfc4514_string()
    now = datetime.now(UTC)

    import engine.certificates.writer as certificates

    if hasattr(certificates, "sign_certificate"):
        # The writer's own one-pass path: signature reserved while the page is written, filled in place.
        label = "engine.certificates.writer.sign_certificate"

        def one_ours(item: tuple[dict[str, Any], str]) -> bytes:
            return certificates.sign_certificate(item[0], item[1], ours, signer_name=name, signed_at=now)
    else:
        label = "render_certificate + PadesSigner.sign"

        def one_ours(item: tuple[dict[str, Any], str]) -> bytes:
            return ours.sign(render_certificate(item[0], item[1], signer_name=name, development=True), signed_at=now)

    check_valid(one_ours(items[0]), str(k.ca_cert), "render_certificate + PadesSigner")
    check_valid(naive_certificate(items[0][0], items[0][1], theirs), str(k.ca_cert), "naive reportlab + segno + pyHanko")

    def naive_batch() -> None:
        for item in items[:n_naive]:
            naive_certificate(item[0], item[1], theirs)

    scale = n / n_naive
    single = compare(
        "render + QR + PAdES, one process",
        unit="certificates",
        amount=n,
        candidate=lambda: [one_ours(item) for item in items],
        baseline=naive_batch,
        repeats=ctx.heavy_repeats,
        candidate_label=label,
        baseline_label="reportlab + segno + pyHanko sign_pdf",
        aim="≥ 300/s/core",
    )
    _rescale(single, scale, n_naive)

    # One writer for the whole figure, as the pipeline keeps one: its worker pool starts once
    # (in the untimed warm-up) and each repeat writes the batch again over the same files.
    out_root = ctx.scratch / "certificates"
    out_root.mkdir(parents=True, exist_ok=True)
    writer = CertificateWriter(k.spec, out_root)

    def pooled() -> None:
        paths = writer.write(items)
        if len(paths) != len(items):
            raise AssertionError(f"CertificateWriter wrote {len(paths)} certificates for {len(items)} results")

    cores = ctx.cores
    try:
        pool = compare(
            f"CertificateWriter, process pool of {cores}",
            unit="certificates",
            amount=n,
            candidate=pooled,
            baseline=naive_batch,
            repeats=ctx.heavy_repeats,
            candidate_label="engine.certificates.writer.CertificateWriter.write",
            baseline_label="reportlab + segno + pyHanko sign_pdf",
            cores=cores,
            aim="≥ 300/s/core; 3,840 in < 15 s on 2 cores",
        )
    finally:
        _close(writer)
    _rescale(pool, scale, n_naive)
    tp = pool.throughput(pool.candidate)
    if tp:
        pool.extra["plate_3840_s"] = round(3840 / tp, 2)
    return [single, pool]


def _rescale(fig: Figure, scale: float, n_naive: int) -> None:
    """The baseline timed fewer certificates (it is slow); scale its times to the candidate's count."""
    if fig.baseline:
        fig.baseline.wall = [w * scale for w in fig.baseline.wall]
        fig.baseline.cpu = [c * scale for c in fig.baseline.cpu]
        fig.extra["baseline_items_timed"] = n_naive


def _close(writer: Any) -> None:
    for name in ("close", "shutdown"):
        fn = getattr(writer, name, None)
        if callable(fn):
            fn()
            return
