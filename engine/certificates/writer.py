"""Signed result certificates: one A4 page per result version, with the HC1 QR, PAdES-signed.

The page is bilingual (Vietnamese first, English after the slash) and names
the lab, the person (national ID and phone masked), the specimen, the test,
the result in large type, Ct values when positive, the issue time in
Asia/Ho_Chi_Minh, the result id and version (and what it supersedes), the QR
and the signer. A certificate signed with the development key says so across
the page.

Throughput comes from doing the constant work once per process
(:class:`~engine.certificates.layout.CertificateTemplate`, the parsed key and
the CMS template in :class:`~signing.pades.PadesSigner`) and spreading whole
batches over a process pool (:class:`CertificateWriter`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cryptography.x509.oid import NameOID

from engine.certificates.layout import (
    ACCENT,
    ALERT,
    BOLD,
    INK,
    ISSUE_RIGHT,
    ISSUE_ROWS,
    ISSUE_VALUE_X,
    LOG_LABEL,
    LOG_LINE,
    MARGIN,
    MUTED,
    PAGE_HEIGHT,
    PAGE_WIDTH,
    PERSON_ROWS,
    QR_BOX,
    REGULAR,
    RESULT_BOX,
    SPECIMEN_ROWS,
    TEST_ROWS,
    VALUE_RIGHT,
    VALUE_X,
    WHITE,
    CertificateTemplate,
)
from engine.certificates.qr import QUIET_ZONE, qr_image_object, qr_modules
from engine.errors import USER_ERRORS, SigningError
from engine.files import fsync_dir, write_atomically
from signing.pades import PadesSigner

if TYPE_CHECKING:
    from signing.keys import Signer, SignerSpec
    from signing.pades import TimeStamperLike

__all__ = [
    "render_certificate",
    "sign_certificate",
    "CertificateWriter",
    "certificate_lines",
    "OUTCOME_TEXT",
    "mask_national_id",
    "mask_phone",
]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")

#: The result line, in Vietnamese and English, and its colour.
OUTCOME_TEXT: dict[str, tuple[str, tuple[float, float, float]]] = {
    "POSITIVE": ("DƯƠNG TÍNH / POSITIVE", (0.78, 0.06, 0.06)),
    "NEGATIVE": ("ÂM TÍNH / NEGATIVE", (0.05, 0.45, 0.20)),
    "INCONCLUSIVE": ("KHÔNG XÁC ĐỊNH / INCONCLUSIVE", (0.78, 0.45, 0.00)),
}
SEX_TEXT = {
    "male": "Nam / Male",
    "m": "Nam / Male",
    "nam": "Nam / Male",
    "female": "Nữ / Female",
    "f": "Nữ / Female",
    "nữ": "Nữ / Female",
    "nu": "Nữ / Female",
    "other": "Khác / Other",
    "o": "Khác / Other",
    "khác": "Khác / Other",
}
#: What an inconclusive result asks of the person (printed where a positive shows its Ct values).
INCONCLUSIVE_HINT = "Cần lấy lại mẫu để xét nghiệm lại / A new swab is needed for a repeat test"
DEVELOPMENT_BANNER = "KHÓA PHÁT TRIỂN – KHÔNG CÓ GIÁ TRỊ / DEVELOPMENT KEY – NOT A VALID CERTIFICATE"
DEVELOPMENT_WATERMARK = "DEVELOPMENT · PHÁT TRIỂN"


# -- field formatting ---------------------------------------------------------------


def mask_national_id(value: str | None) -> str:
    """All but the last 4 characters replaced by ``*`` (the length stays visible); short IDs keep at most half."""
    if not value:
        return "—"
    value = value.strip()
    keep = min(4, len(value) // 2)
    return "*" * (len(value) - keep) + value[len(value) - keep:]


def mask_phone(value: str | None) -> str:
    """Digits masked except the last 3; a leading ``+`` and the separators are kept."""
    if not value:
        return "—"
    value = value.strip()
    digits = sum(ch.isdigit() for ch in value)
    keep = min(3, max(0, digits - 1))
    seen = 0
    out = []
    for ch in value:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def _local_time(value: str | None) -> str:
    """An ISO 8601 instant shown in Vietnam time, ``dd/mm/yyyy HH:MM (GMT+7)``."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # show what the manifest said rather than nothing
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VIETNAM)  # manifests from Vietnamese platforms mean local time
    return moment.astimezone(VIETNAM).strftime("%d/%m/%Y %H:%M (GMT+7)")


def _birth_date(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return date.fromisoformat(value).strftime("%d/%m/%Y")
    except ValueError:
        return value  # a year-only or partial date is printed as recorded


def _sex(value: str | None) -> str:
    if not value:
        return "—"
    return SEX_TEXT.get(value.strip().lower(), value)


def _ct_text(cts: dict[str, float | None] | None) -> str:
    """Ct values per target, in cycles, sorted by target; ``—`` where not amplified."""
    if not cts:
        return ""
    parts = []
    for target in sorted(cts):
        ct = cts[target]
        parts.append(f"{target} {ct:.2f}" if ct is not None and ct == ct else f"{target} —")
    return "Giá trị Ct / Ct values: " + " · ".join(parts)


def _version_text(result: dict[str, Any]) -> str:
    version = result.get("version", 1)
    superseded = result.get("supersedes")
    if not superseded:
        return str(version)
    if superseded.get("id") == result.get("id"):
        return f"{version} — thay thế / supersedes v{superseded.get('version')}"
    return f"{version} — thay thế / supersedes {superseded.get('id')} v{superseded.get('version')}"


def _mode_text(test: dict[str, Any]) -> str:
    if test.get("pooled"):
        text = f"Gộp mẫu / Pooled — mã gộp / pool {test.get('pool_id') or '—'}"
        if test.get("design"):
            text += f" ({test['design']})"
        return text
    return "Mẫu đơn / Individual"


def _assay_text(test: dict[str, Any]) -> str:
    assay, kit = test.get("assay") or "", test.get("kit") or ""
    if assay and kit and kit != assay:
        return f"{kit} ({assay})"
    return kit or assay or "—"


def certificate_lines(result: dict[str, Any], *, signer_name: str) -> dict[str, str]:
    """Every variable text of a certificate, keyed by field, exactly as printed (before fitting)."""
    person = result.get("person") or {}
    specimen = result.get("specimen") or {}
    test = result.get("test") or {}
    lab = result.get("lab") or {}
    evidence = result.get("evidence") or {}
    outcome = result.get("outcome")
    if outcome not in OUTCOME_TEXT:
        raise SigningError(
            f"result {result.get('id')!r} has outcome {outcome!r}; only POSITIVE, NEGATIVE and "
            "INCONCLUSIVE results get a certificate"
        )
    lines = {
        "lab_name": lab.get("name") or "—",
        "lab_licence": "Giấy phép / Licence: " + (lab.get("licence") or "—"),
        "full_name": person.get("full_name") or "—",
        "date_of_birth": _birth_date(person.get("date_of_birth")),
        "sex": _sex(person.get("sex")),
        "national_id": mask_national_id(person.get("national_id")),
        "phone": mask_phone(person.get("phone")),
        "specimen_id": specimen.get("id") or "—",
        "collected_at": _local_time(specimen.get("collected_at")),
        "collection_site": specimen.get("collection_site") or "—",
        "assay": _assay_text(test),
        "mode": _mode_text(test),
        "outcome": OUTCOME_TEXT[outcome][0],
        "ct": _ct_text(evidence.get("ct")) if outcome == "POSITIVE" else INCONCLUSIVE_HINT if outcome == "INCONCLUSIVE" else "",
        "issued_at": _local_time(result.get("issued_at")),
        "result_id": str(result.get("id") or "—"),
        "version": _version_text(result),
        "signer": signer_name,
    }
    correction = result.get("correction")
    if correction:
        lines["correction"] = correction.get("reason") or "—"
    # Not part of the signed payload (the log's leaf is the JWS): the ledger row's index, added by the caller.
    log_index = result.get("log_index")
    if isinstance(log_index, int) and not isinstance(log_index, bool):
        lines["log_index"] = f"{LOG_LABEL}: #{log_index}"
    return lines


# -- page -------------------------------------------------------------------------------

_TEMPLATE: CertificateTemplate | None = None


def _template_for(texts: Iterable[str]) -> CertificateTemplate:
    """The process's template, or a one-off one when a text needs glyphs outside its repertoire."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = CertificateTemplate()
    missing = set().union(*map(set, texts)) - _TEMPLATE.repertoire
    if not missing:
        return _TEMPLATE
    return _extra_template("".join(sorted(missing)))


@lru_cache(maxsize=8)
def _extra_template(extra: str) -> CertificateTemplate:
    return CertificateTemplate(extra_chars=extra)


def _page(
    result: dict[str, Any], hc1: str, *, signer_name: str, development: bool
) -> tuple[CertificateTemplate, bytes, bytes, bytes]:
    """Template, content drawn over and under the static page, and the QR image object."""
    lines = {k: unicodedata.normalize("NFC", v) for k, v in certificate_lines(result, signer_name=signer_name).items()}
    extra = [DEVELOPMENT_BANNER, DEVELOPMENT_WATERMARK] if development else []
    template = _template_for([*lines.values(), *extra])
    t = template.text
    ops = [
        t(lines["lab_name"], MARGIN, PAGE_HEIGHT - 38, face=BOLD, size=15, rgb=WHITE, max_width=PAGE_WIDTH - 2 * MARGIN),
        t(lines["lab_licence"], MARGIN, PAGE_HEIGHT - 56, size=9, rgb=WHITE, max_width=PAGE_WIDTH - 2 * MARGIN),
    ]
    if development:
        ops.append(t(DEVELOPMENT_BANNER, PAGE_WIDTH / 2, PAGE_HEIGHT - 98, face=BOLD, size=9.5, rgb=ALERT,
                     align="center", max_width=PAGE_WIDTH - 2 * MARGIN))
    value_width = VALUE_RIGHT - VALUE_X
    for rows in (PERSON_ROWS, SPECIMEN_ROWS, TEST_ROWS):
        for key, row in rows.items():
            if key in lines:
                bold = key == "full_name"
                ops.append(t(lines[key], VALUE_X, row.y, face=BOLD if bold else REGULAR, size=11 if bold else 10.5,
                             max_width=value_width))
    x, y, w, h = RESULT_BOX
    colour = OUTCOME_TEXT[result["outcome"]][1]
    # The Ct line sits more than one result-font height below the result, so text
    # extractors (which compare the baseline step with the font size) see two lines.
    ops.append(t(lines["outcome"], x + w / 2, y + 35, face=BOLD, size=24, rgb=colour, align="center", max_width=w - 24))
    if lines["ct"]:
        ops.append(t(lines["ct"], x + w / 2, y + 9, size=9, align="center", max_width=w - 24))
    issue_width = ISSUE_RIGHT - ISSUE_VALUE_X
    for key, row in ISSUE_ROWS.items():
        if key == "correction":
            if "correction" in lines:
                # Label and reason as running text (a text layer then reads "…Correction: reason"),
                # wrapped in the column left of the QR code.
                width = ISSUE_RIGHT - MARGIN - 12
                wrapped = template.wrap(f"{row.label}: {lines['correction']}", size=8.5, max_width=width)
                for k, line in enumerate(wrapped):
                    ops.append(t(line, MARGIN + 12, row.y - 11 * k, size=8.5, rgb=ALERT, max_width=width))
            continue
        ops.append(t(lines[key], ISSUE_VALUE_X, row.y, size=9.5, rgb=INK, max_width=issue_width))
    if "log_index" in lines:
        lx, ly = LOG_LINE
        ops.append(t(lines["log_index"], lx, ly, size=8, rgb=MUTED, max_width=ISSUE_RIGHT - lx))
    # The QR: one image, scaled so the symbol plus its quiet zone fills the box.
    modules = qr_modules(hc1)
    qx, qy, side = QR_BOX
    count = modules.shape[0] + 2 * QUIET_ZONE
    module = side / count
    inset = QUIET_ZONE * module
    ops.append(b"q %.4f 0 0 %.4f %.4f %.4f cm /QR Do Q\n" % (side - 2 * inset, side - 2 * inset, qx + inset, qy + inset))
    ops.append(b"%.3f %.3f %.3f RG 0.5 w %.2f %.2f %.2f %.2f re S\n" % (*ACCENT, qx, qy, side, side))
    under = template.watermark(DEVELOPMENT_WATERMARK) if development else b""
    return template, b"".join(ops), under, qr_image_object(modules)


def _document_key(result: dict[str, Any]) -> bytes:
    return f"{result.get('id')}#{result.get('version')}".encode("utf-8")


def _document_info(result: dict[str, Any], signer_name: str) -> dict[str, str]:
    """PDF document information: what a file manager or PDF reader shows, dated by the result's issue time."""
    info = {
        "Title": f"Phiếu kết quả xét nghiệm SARS-CoV-2 / SARS-CoV-2 test result {result.get('id')} v{result.get('version')}",
        "Author": str((result.get("lab") or {}).get("name") or signer_name),
        "Subject": f"{result.get('outcome')} — {(result.get('specimen') or {}).get('id')}",
        "Creator": "ketqua",
        "Producer": "ketqua (reportlab template, PAdES)",
    }
    try:
        issued = datetime.fromisoformat(str(result.get("issued_at")).replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return info
    info["CreationDate"] = info["ModDate"] = issued.strftime("D:%Y%m%d%H%M%S+00'00'")
    return info


def render_certificate(result: dict[str, Any], hc1: str, *, signer_name: str, development: bool) -> bytes:
    """The unsigned one-page certificate PDF for one result version (sign it with ``PadesSigner.sign``)."""
    template, over, under, qr = _page(result, hc1, signer_name=signer_name, development=development)
    pdf, _ = template.assemble(over, qr, under=under, document_key=_document_key(result),
                               info=_document_info(result, signer_name))
    return bytes(pdf)


def sign_certificate(
    result: dict[str, Any],
    hc1: str,
    pades: "PadesSigner",
    *,
    signer_name: str | None = None,
    signed_at: datetime | None = None,
) -> bytes:
    """Render and PAdES-sign in one pass: the signature is reserved while the page is written, then filled in place."""
    signer = pades.signer
    name = signer_name or _signer_name(signer)
    template, over, under, qr = _page(result, hc1, signer_name=name, development=signer.development)
    pdf, slot = template.assemble(
        over,
        qr,
        under=under,
        document_key=_document_key(result),
        pades=pades,
        signed_at=signed_at or datetime.now(timezone.utc),
        signer_name=name,
        info=_document_info(result, name),
    )
    assert slot is not None
    pades.fill(pdf, slot, prefix=(template.prefix_digest, len(template.pdf)))
    return bytes(pdf)


def _signer_name(signer: "Signer") -> str:
    """The signer certificate's common name (the whole subject when it has none)."""
    subject = signer.certificate.subject
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else subject.rfc4514_string()


# -- batches over a process pool -------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def certificate_filename(result: dict[str, Any]) -> str:
    """``<id>-v<version>.pdf`` with anything unsafe for a file name replaced."""
    return f"{_SAFE.sub('_', str(result.get('id')))}-v{int(result.get('version', 1))}.pdf"


class _Worker:
    """Per-process state: the opened signer and its PAdES template (built once, reused for every batch)."""

    def __init__(self, signer_spec: "SignerSpec", out_dir: Path, timestamper: "TimeStamperLike | None") -> None:
        self.pades = PadesSigner(signer_spec.open(), timestamper)
        self.name = _signer_name(self.pades.signer)
        self.out_dir = out_dir

    def write(self, batch: list[tuple[dict[str, Any], str]]) -> list[str]:
        paths = []
        for result, hc1 in batch:
            pdf = sign_certificate(result, hc1, self.pades, signer_name=self.name)
            path = self.out_dir / certificate_filename(result)
            # Durable before the ledger records it: readers never see half a certificate, and a power
            # cut never leaves the ledger naming a PDF that is not on disk. One folder fsync per batch.
            write_atomically(path, pdf, sync_folder=False)
            paths.append(str(path))
        fsync_dir(self.out_dir)
        return paths


_WORKER: _Worker | None = None


def _init_worker(signer_spec: "SignerSpec", out_dir: str, timestamper: "TimeStamperLike | None") -> None:
    global _WORKER
    _WORKER = _Worker(signer_spec, Path(out_dir), timestamper)


def _write_batch(batch: list[tuple[dict[str, Any], str]]) -> list[str]:
    assert _WORKER is not None, "worker initializer did not run"
    try:
        return _WORKER.write(batch)
    except USER_ERRORS:
        raise
    except Exception as exc:  # keep the error tree across the process boundary
        raise SigningError(f"certificate worker failed: {type(exc).__name__}: {exc}") from exc


class CertificateWriter:
    """Renders and PAdES-signs certificates for whole plates on a pool of worker processes.

    Each worker opens its own signer from the picklable ``signer_spec`` (a key
    or a PKCS#11 session cannot cross processes) and keeps it, with the page
    template, for every later batch. Batches are bounded, so memory stays flat
    however many certificates pass through.
    """

    def __init__(
        self,
        signer_spec: "SignerSpec",
        out_dir: str | os.PathLike[str],
        *,
        workers: int | None = None,
        batch_size: int = 128,
        timestamper: "TimeStamperLike | None" = None,
    ) -> None:
        self.signer_spec = signer_spec
        self.out_dir = Path(out_dir)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.batch_size = max(1, batch_size)
        self.timestamper = timestamper
        self._pool: ProcessPoolExecutor | None = None
        self._local: _Worker | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers never inherit the pipeline's event loop threads or open sockets.
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.signer_spec, str(self.out_dir), self.timestamper),
            )
        return self._pool

    def write(self, items: Iterable[tuple[dict[str, Any], str]]) -> list[Path]:
        """Write one signed PDF per ``(result, hc1)``; the paths come back in the same order."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        size = self.batch_size
        if isinstance(items, Sized):
            # Enough batches to keep every worker busy to the end, none so small that the hand-off dominates.
            size = min(self.batch_size, max(16, -(-len(items) // (4 * self.workers))))
        batches = _chunks(items, size)
        first = next(batches, None)
        if first is None:
            return []
        if self.workers == 1 or (self._pool is None and len(first) < size):
            # One small batch (a demo, a single retest) is done here: starting
            # worker processes would cost more than the signing itself.
            if self._local is None:
                self._local = _Worker(self.signer_spec, self.out_dir, self.timestamper)
            return [Path(p) for batch in (first, *batches) for p in self._local.write(batch)]
        batches = itertools.chain([first], batches)
        pool = self._executor()
        paths: list[Path] = []
        # Keep at most two batches per worker in flight: bounded memory, busy workers.
        window = 2 * self.workers
        pending: list[Any] = []
        try:
            for batch in batches:
                pending.append(pool.submit(_write_batch, batch))
                if len(pending) >= window:
                    paths.extend(Path(p) for p in pending.pop(0).result())
            for future in pending:
                paths.extend(Path(p) for p in future.result())
        except BrokenProcessPool as exc:
            # A worker died (out of memory, killed, a crash in a native library):
            # drop the pool so the next write starts fresh, and say what happened.
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise SigningError(
                f"a certificate worker process stopped unexpectedly after {len(paths)} certificates "
                f"({exc}); the remaining results still have no certificate and can be written again"
            ) from exc
        return paths

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`write` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "CertificateWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(items: Iterable[tuple[dict[str, Any], str]], size: int) -> Iterator[list[tuple[dict[str, Any], str]]]:
    batch: list[tuple[dict[str, Any], str]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
