"""The certificate page: a reportlab-built template plus a small per-result update.

reportlab's page building is pure Python and costs tens of milliseconds per
page, most of it on things every certificate shares: the embedded fonts, the
bilingual labels, rules and boxes. So, once per process, reportlab draws the
constant page into a template PDF with the DejaVu Sans subsets already holding
every glyph Vietnamese needs. Per result, :meth:`CertificateTemplate.assemble`
appends an incremental update (ISO 32000-1 §7.5.6) to the template's bytes:
a content stream with the variable text (encoded with the template's own font
subsets, so the text layer stays extractable), the QR image, the page and
catalogue that point at them, and, when signing, the signature field and a
signature dictionary with a reserved ``/Contents``; then the PAdES signer fills
that placeholder in place. No PDF is parsed per certificate.

A name with a character outside the pre-built repertoire (rare: Chinese or
Khmer names, symbols) gets a one-off template that includes it.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

    from signing.pades import PadesSigner, SignatureSlot

__all__ = ["CertificateTemplate", "font_paths", "REPERTOIRE", "PAGE_WIDTH", "PAGE_HEIGHT"]

PAGE_WIDTH, PAGE_HEIGHT = 595.2756, 841.8898  # A4 in points
MARGIN = 42.0

REGULAR, BOLD = "KetquaSans", "KetquaSans-Bold"
Face = Literal["KetquaSans", "KetquaSans-Bold"]

#: Every character the template's font subsets hold: printable ASCII, every
#: precomposed Vietnamese letter (Latin-1, Latin Extended-A/B and the
#: U+1EA0–U+1EF9 block) and a few typographic marks.
REPERTOIRE = "".join(
    sorted(
        {chr(c) for c in range(0x20, 0x7F)}
        | set("ÀÁÂÃÈÉÊÌÍÒÓÔÕÙÚÝàáâãèéêìíòóôõùúýĂăĐđĨĩŨũƠơƯư")
        | {chr(c) for c in range(0x1EA0, 0x1EFA)}  # ẠạẢả … Ỹỹ
        | set("–—’“”•…·")
    )
)
# 95 ASCII + 134 Vietnamese letters + 8 marks = 237: one 256-code subset per
# face, so each certificate embeds two font programs, not four. Anything else
# (ü, ñ, ç in a foreign name) gets a one-off template with those glyphs added.


def font_paths() -> tuple[str, str]:
    """DejaVu Sans regular and bold, as shipped inside matplotlib (full Vietnamese coverage)."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        raise ConfigError("certificates need matplotlib (it ships the DejaVu Sans font): pip install matplotlib") from exc
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    paths = (os.path.join(folder, "DejaVuSans.ttf"), os.path.join(folder, "DejaVuSans-Bold.ttf"))
    for path in paths:
        if not os.path.exists(path):
            raise ConfigError(f"font {path} is missing from the matplotlib installation; reinstall matplotlib")
    return paths


#: Name-table records kept in embedded subsets: copyright, family, style, unique id,
#: full name, version, PostScript name. The rest is mostly DejaVu's licence text
#: (15 KB per face, 4 KB compressed) that every certificate would otherwise carry.
_KEPT_NAME_IDS = frozenset(range(7))


def _lean_subset(make_subset: Any, subset: Any) -> bytes:
    """reportlab's TrueType subset, minus the long name records (the glyphs and hinting are untouched)."""
    from fontTools.ttLib import TTFont as ToolsFont

    font = ToolsFont(io.BytesIO(make_subset(subset)))
    if "name" in font:
        font["name"].names = [record for record in font["name"].names if record.nameID in _KEPT_NAME_IDS]
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _register_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, path in zip((REGULAR, BOLD), font_paths()):
        if name not in registered:
            font = TTFont(name, path)
            # Only our registered faces are affected (reportlab calls face.makeSubset when embedding).
            font.face.makeSubset = partial(_lean_subset, font.face.makeSubset)
            pdfmetrics.registerFont(font)


# Colours (RGB 0–1).
INK = (0.10, 0.10, 0.12)
MUTED = (0.38, 0.40, 0.44)
ACCENT = (0.04, 0.25, 0.40)
WHITE = (1.0, 1.0, 1.0)
RULE = (0.78, 0.80, 0.83)
ALERT = (0.78, 0.06, 0.06)


@dataclass(frozen=True)
class Row:
    """One labelled line of the page: where its value goes and how wide it may be."""

    y: float
    label: str


LABEL_X = MARGIN + 12
VALUE_X = 200.0
VALUE_RIGHT = PAGE_WIDTH - MARGIN
ISSUE_VALUE_X = 170.0
ISSUE_RIGHT = 372.0

PERSON_ROWS = {
    "full_name": Row(643, "Họ và tên / Full name"),
    "date_of_birth": Row(627, "Ngày sinh / Date of birth"),
    "sex": Row(611, "Giới tính / Sex"),
    "national_id": Row(595, "Số CCCD/CMND / National ID"),
    "phone": Row(579, "Điện thoại / Phone"),
}
SPECIMEN_ROWS = {
    "specimen_id": Row(530, "Mã mẫu / Specimen ID"),
    "specimen_type": Row(514, "Loại mẫu / Specimen type"),
    "collected_at": Row(498, "Thời gian lấy mẫu / Collected"),
    "collection_site": Row(482, "Nơi lấy mẫu / Collection site"),
}
TEST_ROWS = {
    "assay": Row(433, "Sinh phẩm / Assay (kit)"),
    "method": Row(417, "Phương pháp / Method"),
    "mode": Row(401, "Hình thức / Testing mode"),
}
ISSUE_ROWS = {
    "issued_at": Row(253, "Ngày trả kết quả / Issued"),
    "result_id": Row(237, "Mã kết quả / Result ID"),
    "version": Row(221, "Phiên bản / Version"),
    "signer": Row(205, "Người ký / Signed by"),
    "correction": Row(189, "Lý do đính chính / Correction"),
}
#: The result's leaf in the lab's transparency log: one small line at the foot of the issue column.
LOG_LINE = (MARGIN + 12, 110.0)  # x, y
LOG_LABEL = "Nhật ký minh bạch / Transparency log"
RESULT_BOX = (MARGIN, 300.0, PAGE_WIDTH - 2 * MARGIN, 78.0)  # x, y, width, height
QR_BOX = (392.0, 104.0, 161.0)  # x, y, side (points), quiet zone included
STATIC_VALUES = {
    "specimen_type": "Dịch tỵ hầu / Nasopharyngeal swab",
    "method": "RT-PCR (real-time reverse-transcription PCR)",
}
FOOTER_LINES = (
    "Chứng nhận này được ký số theo chuẩn PAdES (ETSI EN 319 142). Kiểm tra chữ ký bằng trình đọc PDF, hoặc: ketqua verify <tệp.pdf>",
    "This certificate carries a PAdES digital signature. Check it in a PDF reader, or run: ketqua verify <file.pdf>",
    "Mã QR chứa chứng nhận xét nghiệm định dạng EU DCC (HC1) / The QR code holds an EU-DCC-format test certificate (HC1).",
)


def _draw_static(c: "Canvas") -> None:
    """Everything on the page that does not depend on the result (drawn once per process)."""
    width, height = PAGE_WIDTH, PAGE_HEIGHT
    c.setFillColorRGB(*ACCENT)
    c.rect(0, height - 78, width, 78, stroke=0, fill=1)

    c.setFillColorRGB(*INK)
    c.setFont(BOLD, 16)
    c.drawCentredString(width / 2, height - 128, "PHIẾU KẾT QUẢ XÉT NGHIỆM SARS-CoV-2")
    c.setFont(REGULAR, 11)
    c.drawCentredString(width / 2, height - 146, "SARS-CoV-2 RT-PCR TEST RESULT CERTIFICATE")

    def section(y: float, title: str, right: float = width - MARGIN) -> None:
        c.setFillColorRGB(*ACCENT)
        c.setFont(BOLD, 10)
        c.drawString(MARGIN, y, title)
        c.setStrokeColorRGB(*RULE)
        c.setLineWidth(0.8)
        c.line(MARGIN, y - 5, right, y - 5)

    def labels(rows: dict[str, Row]) -> None:
        c.setFillColorRGB(*MUTED)
        c.setFont(REGULAR, 8.5)
        for key, row in rows.items():
            if key == "correction":
                continue  # only drawn (with its value) on corrected versions
            c.drawString(LABEL_X, row.y, row.label)

    section(665, "NGƯỜI ĐƯỢC XÉT NGHIỆM / PERSON TESTED")
    labels(PERSON_ROWS)
    section(552, "MẪU BỆNH PHẨM / SPECIMEN")
    labels(SPECIMEN_ROWS)
    section(455, "XÉT NGHIỆM / TEST")
    labels(TEST_ROWS)
    c.setFillColorRGB(*INK)
    c.setFont(REGULAR, 10.5)
    for key, value in STATIC_VALUES.items():
        row = SPECIMEN_ROWS.get(key) or TEST_ROWS[key]
        c.drawString(VALUE_X, row.y, value)

    x, y, w, h = RESULT_BOX
    c.setStrokeColorRGB(*RULE)
    c.setLineWidth(1.2)
    c.roundRect(x, y, w, h, 6, stroke=1, fill=0)
    c.setFillColorRGB(*MUTED)
    c.setFont(BOLD, 9)
    c.drawString(x + 12, y + h - 16, "KẾT QUẢ / RESULT")

    section(275, "PHÁT HÀNH / ISSUE", right=ISSUE_RIGHT)
    labels(ISSUE_ROWS)

    qx, qy, side = QR_BOX
    c.setFillColorRGB(*MUTED)
    c.setFont(REGULAR, 8)
    c.drawCentredString(qx + side / 2, qy - 10, "Quét mã QR để xác minh / Scan to verify")

    c.setStrokeColorRGB(*RULE)
    c.setLineWidth(0.6)
    c.line(MARGIN, 72, width - MARGIN, 72)
    c.setFont(REGULAR, 7)
    for i, line in enumerate(FOOTER_LINES):
        c.drawString(MARGIN, 60 - 10 * i, line)


#: Catalogue entries every certificate carries: PDF 1.7 (the template's header says 1.3),
#: Vietnamese as the document language for screen readers, and the title in the window bar.
_CATALOG_EXTRA = b"/Version /1.7 /Lang (vi-VN) /ViewerPreferences << /DisplayDocTitle true >> "


def _pdf_string(value: str) -> bytes:
    """A PDF text string: plain ASCII as a literal, anything else UTF-16BE with a byte-order mark."""
    if value.isascii() and value.isprintable():
        return b"(" + value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("ascii") + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


class _FaceCodes:
    """How one face's characters are written with the template's font subsets."""

    def __init__(self, font: Any, doc: Any) -> None:
        state = font.state[doc]
        # reportlab assigns each character a code n: subset n >> 8, byte n & 0xFF.
        self.codes = {chr(u): divmod(n, 256) for u, n in state.assignments.items()}
        self.subset_names = [
            font.getSubsetInternalName(i, doc).encode("ascii")
            for i in range(len(state.subsets))
        ]
        self.font_name = font.fontName

    def runs(self, text: str) -> list[tuple[int, bytes]]:
        """Split ``text`` into (subset, code bytes) runs; KeyError for a character not in the subsets."""
        codes = self.codes
        runs: list[tuple[int, bytes]] = []
        current = -1
        buf = bytearray()
        for ch in text:
            subset, code = codes[ch]
            if subset != current:
                if buf:
                    runs.append((current, bytes(buf)))
                    buf = bytearray()
                current = subset
            buf.append(code)
        if buf:
            runs.append((current, bytes(buf)))
        return runs


class CertificateTemplate:
    """The constant page, built once per process, and the per-result incremental update."""

    def __init__(self, extra_chars: str = "") -> None:
        from pyhanko.pdf_utils.reader import PdfFileReader
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfgen import canvas as rl_canvas

        _register_fonts()
        self._string_width = pdfmetrics.stringWidth
        buffer = io.BytesIO()
        # invariant=1: fixed dates and /ID, so the same result renders to the same bytes everywhere.
        c = rl_canvas.Canvas(buffer, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=1, pageCompression=1)
        c.setTitle("SARS-CoV-2 RT-PCR test result certificate")
        c.setCreator("ketqua")
        _draw_static(c)
        repertoire = "".join(sorted(set(REPERTOIRE) | set(extra_chars)))
        faces = {}
        for face in (REGULAR, BOLD):
            font = pdfmetrics.getFont(face)
            # Assign every repertoire character a subset code now, while the
            # document is open; the subsets are written (and frozen) on save.
            font.splitString(repertoire, c._doc)
            faces[face] = font
        c.showPage()
        # reportlab drops its per-document font state on save; read the code assignments first.
        self._faces = {name: _FaceCodes(font, c._doc) for name, font in faces.items()}
        c.save()
        self.pdf = buffer.getvalue()
        if not self.pdf.endswith(b"\n"):
            self.pdf += b"\n"
        self.repertoire = frozenset(repertoire)
        # Digest of the template bytes, continued per certificate (they open every signed range).
        self.prefix_digest = hashlib.sha256(self.pdf)

        reader = PdfFileReader(io.BytesIO(self.pdf))
        trailer = reader.trailer
        self._root_num = trailer.raw_get("/Root").idnum
        self._info_num = trailer.raw_get("/Info").idnum
        self._id0 = bytes(trailer["/ID"][0])
        pages_ref = reader.root.raw_get("/Pages")
        page_ref = reader.root["/Pages"]["/Kids"].raw_get(0)
        page = page_ref.get_object()
        self._pages_num = pages_ref.idnum
        self._page_num = page_ref.idnum
        self._static_num = page.raw_get("/Contents").idnum
        self._fonts_num = page["/Resources"].raw_get("/Font").idnum
        self._size = int(trailer["/Size"])
        self._prev = reader.last_startxref

    # -- text ------------------------------------------------------------------

    def covers(self, text: str) -> bool:
        """Whether every character of ``text`` is in this template's font subsets."""
        return self.repertoire.issuperset(text)

    def width(self, text: str, face: Face, size: float) -> float:
        """Advance width of ``text`` in points."""
        return float(self._string_width(text, face, size))

    def text(
        self,
        text: str,
        x: float,
        y: float,
        *,
        face: Face = REGULAR,
        size: float = 10.5,
        rgb: tuple[float, float, float] = INK,
        align: Literal["left", "center", "right"] = "left",
        max_width: float | None = None,
        min_size: float = 6.0,
    ) -> bytes:
        """Content-stream operators that draw one line of text.

        Text wider than ``max_width`` is set smaller, down to ``min_size``, and
        then cut with an ellipsis; nothing runs off the page or over the QR.
        """
        text = unicodedata.normalize("NFC", text)
        width = self.width(text, face, size)
        if max_width is not None and width > max_width:
            size = max(min_size, size * max_width / width)
            width = self.width(text, face, size)
            while width > max_width and len(text) > 1:
                text = text[:-2] + "…"
                width = self.width(text, face, size)
        if align == "center":
            x -= width / 2
        elif align == "right":
            x -= width
        codes = self._faces[face]
        parts = [b"%.3f %.3f %.3f rg BT 1 0 0 1 %.2f %.2f Tm" % (*rgb, x, y)]
        for subset, run in codes.runs(text):
            parts.append(b"%s %.2f Tf <%s> Tj" % (codes.subset_names[subset], size, run.hex().encode("ascii")))
        parts.append(b"ET\n")
        return b" ".join(parts)

    def wrap(self, text: str, *, face: Face = REGULAR, size: float = 9, max_width: float, max_lines: int = 4) -> list[str]:
        """Greedy word wrap into at most ``max_lines`` lines (the last one cut with an ellipsis by :meth:`text`)."""
        words = unicodedata.normalize("NFC", text).split()
        lines: list[str] = []
        current = ""
        for index, word in enumerate(words):
            trial = f"{current} {word}" if current else word
            if current and self.width(trial, face, size) > max_width:
                lines.append(current)
                current = word
                if len(lines) == max_lines - 1:
                    current = " ".join(words[index:])  # the rest goes on the last line
                    break
            else:
                current = trial
        if current:
            lines.append(current)
        return lines

    def watermark(self, text: str, *, size: float = 54, rgb: tuple[float, float, float] = (1.0, 0.86, 0.86)) -> bytes:
        """Large diagonal text across the page (drawn under everything else)."""
        text = unicodedata.normalize("NFC", text)
        codes = self._faces[BOLD]
        width = self.width(text, BOLD, size)
        if width > 600:  # keep the diagonal inside the A4 page
            size *= 600 / width
            width = 600.0
        # 35 degrees, centred on the page.
        cos, sin = 0.8192, 0.5736
        cx, cy = PAGE_WIDTH / 2, PAGE_HEIGHT / 2
        x = cx - cos * width / 2 + sin * size / 3
        y = cy - sin * width / 2 - cos * size / 3
        parts = [b"%.3f %.3f %.3f rg BT %.4f %.4f %.4f %.4f %.2f %.2f Tm" % (*rgb, cos, sin, -sin, cos, x, y)]
        for subset, run in codes.runs(text):
            parts.append(b"%s %.2f Tf <%s> Tj" % (codes.subset_names[subset], size, run.hex().encode("ascii")))
        parts.append(b"ET\n")
        return b" ".join(parts)

    # -- the per-result update ---------------------------------------------------

    def assemble(
        self,
        over: bytes,
        qr_object: bytes,
        *,
        under: bytes = b"",
        document_key: bytes,
        pades: "PadesSigner | None" = None,
        signed_at: datetime | None = None,
        signer_name: str | None = None,
        info: dict[str, str] | None = None,
    ) -> tuple[bytearray, "SignatureSlot | None"]:
        """The template plus one incremental update that completes (and, with ``pades``, reserves a signature for) the page.

        ``over`` is drawn above the static page, ``under`` below it. Returns the
        PDF and, when signing, where the signature goes (pass both to
        ``pades.fill``). ``document_key`` makes the second ``/ID`` entry;
        ``info`` replaces the document information (``Title``, ``Author``,
        ``Subject``, ``CreationDate`` …; values are text, dates in PDF form).
        """
        out = bytearray(self.pdf)
        offsets: dict[int, int] = {}
        # New objects take the numbers after the template's, densely.
        numbers = iter(range(self._size, self._size + 6))
        over_num, qr_num = next(numbers), next(numbers)
        under_num = next(numbers) if under else None
        widget_num = next(numbers) if pades is not None else None
        sig_num = next(numbers) if pades is not None else None
        size = next(numbers)

        def put(num: int, body: bytes) -> int:
            offsets[num] = len(out)
            head = b"%d 0 obj\n" % num
            out.extend(head)
            start = len(out)
            out.extend(body)
            out.extend(b"\nendobj\n")
            return start

        def stream(content: bytes) -> bytes:
            packed = zlib.compress(content, 6)
            return b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(packed), packed)

        put(over_num, stream(over))
        put(qr_num, qr_object)
        if under_num is not None:
            put(under_num, stream(under))
        contents = b"[%s%d 0 R %d 0 R]" % (
            b"%d 0 R " % under_num if under_num is not None else b"",
            self._static_num,
            over_num,
        )
        annots = b" /Annots [%d 0 R]" % widget_num if widget_num is not None else b""
        put(
            self._page_num,
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.4f %.4f] /Resources << /Font %d 0 R "
            b"/XObject << /QR %d 0 R >> /ProcSet [/PDF /Text /ImageB] >> /Contents %s%s >>"
            % (self._pages_num, PAGE_WIDTH, PAGE_HEIGHT, self._fonts_num, qr_num, contents, annots),
        )
        slot = None
        if pades is not None and widget_num is not None and sig_num is not None:
            put(
                self._root_num,
                b"<< /Type /Catalog /Pages %d 0 R %s"
                b"/AcroForm << /Fields [%d 0 R] /SigFlags 3 >> >>" % (self._pages_num, _CATALOG_EXTRA, widget_num),
            )
            put(
                widget_num,
                b"<< /Type /Annot /Subtype /Widget /FT /Sig /T (Signature) /F 132 /Rect [0 0 0 0] "
                b"/P %d 0 R /V %d 0 R >>" % (self._page_num, sig_num),
            )
            if signed_at is None:
                raise ValueError("signed_at is required when signing")
            body, byte_range_at, contents_at = pades.signature_dictionary(signed_at, name=signer_name)
            base = put(sig_num, body)
            slot = pades.slot(base, byte_range_at, contents_at)
        else:
            put(
                self._root_num,
                b"<< /Type /Catalog /Pages %d 0 R %s>>" % (self._pages_num, _CATALOG_EXTRA),
            )

        if info:
            entries = b" ".join(b"/%s %s" % (key.encode("ascii"), _pdf_string(value)) for key, value in info.items())
            put(self._info_num, b"<< " + entries + b" >>")

        xref_at = len(out)
        # Entry 0 (head of the free list) opens the section, as strict readers expect of every xref table.
        out.extend(b"xref\n0 1\n0000000000 65535 f\r\n")
        numbers = sorted(offsets)
        i = 0
        while i < len(numbers):
            j = i
            while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
                j += 1
            out.extend(b"%d %d\n" % (numbers[i], j - i + 1))
            for num in numbers[i:j + 1]:
                out.extend(b"%010d 00000 n\r\n" % offsets[num])
            i = j + 1
        id1 = hashlib.md5(self._id0 + document_key).hexdigest().encode("ascii")
        out.extend(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /Prev %d /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n"
            % (size, self._root_num, self._info_num, self._prev, self._id0.hex().encode("ascii"), id1, xref_at)
        )
        return out, slot
