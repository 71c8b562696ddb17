"""CSV for spreadsheets: cells a spreadsheet would run as a formula are written inert.

Labs open ketqua's CSVs (retests, worklists) in Excel or LibreOffice, which run
a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and some strip
a leading TAB or CR first): a manifest name ``=HYPERLINK("http://evil…")`` would
become a live link. Following the OWASP CSV-injection guidance, such a text cell
gets a leading single quote, which spreadsheets show as text and hide. Numbers
(``int``/``float``) are written as they are: a negative number is not a formula.

Every CSV ketqua writes goes through :class:`DictWriter` (or :func:`neutralise`).
The demo's simulated platform manifest (``engine.demo.manifest_csv``) is input
for ketqua, not an export, and is written verbatim.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FORMULA_STARTS", "DictWriter", "neutralise"]

#: First characters that make a spreadsheet evaluate a cell (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` with a ``'`` in front when it is text a spreadsheet would run; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class DictWriter(csv.DictWriter):
    """:class:`csv.DictWriter` that neutralises every cell (the header is ketqua's own and written as is)."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: neutralise(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)
