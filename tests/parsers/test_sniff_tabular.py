"""Content sniffing across families: each tabular parser claims its own files and nobody else's."""

from __future__ import annotations

from pathlib import Path

import pytest

from parsers import detect, formats
from parsers.registry import MIN_CONFIDENCE, SNIFF_BYTES
from tests.parsers.helpers import DATA, REAL


#: Every file of the tabular families, with the format that must be detected.
OWN = {
    REAL / "quantstudio_txt" / "example_quantsudio_results_only.txt": "quantstudio",
    REAL / "quantstudio_txt" / "appbio_quantstudio_example06.txt": "quantstudio",
    DATA / "quantstudio_7500_results.txt": "quantstudio",
    REAL / "quantstudio_design_analysis_xlsx"
    / "appbio_quantstudio_designandanalysis_Diomni_v4.3_Presence_Absence.xlsx": "quantstudio-xlsx",
    REAL / "abi_sds_txt" / "SDS_sample.txt": "sds",
    REAL / "biorad_cfx_csv" / "example01.csv": "cfx",
    REAL / "biorad_cfx_csv" / "CFX_sample.txt": "cfx",
    DATA / "cfx_vi_semicolon_decimal_comma.csv": "cfx",
    DATA / "cfx_utf16.txt": "cfx",
    REAL / "lightcycler480_txt" / "LightCycler_sample.txt": "lightcycler",
    REAL / "lightcycler480_txt" / "Edward_qPCR_Nrd1_calibration_2019-02-02_Cq.txt.gz": "lightcycler",
    DATA / "lightcycler_multichannel.txt": "lightcycler",
    REAL / "rotorgene_q_csv" / "irregular_multi_assay.csv": "rotorgene",
    REAL / "abbott_m2000_log" / "Results.log.321": "m2000",
}
#: Files of the message/XML families owned by another parser module.
OTHERS = [REAL / "astm_e1394" / "genexpert.txt", REAL / "hl7_v2" / "hl7.txt", REAL / "rdml" / "stepone_std.rdml"]
TABULAR = {"quantstudio", "quantstudio-xlsx", "sds", "cfx", "lightcycler", "rotorgene", "m2000", "generic-csv"}


@pytest.mark.parametrize("path,expected", sorted(OWN.items()), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_detected_as_own_family(path: Path, expected: str) -> None:
    """Each fixture is detected as its own family, renamed to a neutral name (content, not extension)."""
    data = path.read_bytes()
    assert detect(data, "upload.bin").name == expected


@pytest.mark.parametrize("path,expected", sorted(OWN.items()), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_no_other_tabular_sniffer_claims(path: Path, expected: str) -> None:
    """No other tabular sniffer reaches the detection threshold on a family's fixture."""
    head = path.read_bytes()[:SNIFF_BYTES]
    claims = {f.name for f in formats() if f.name in TABULAR and f.sniff(head, path.name) >= MIN_CONFIDENCE}
    assert claims == {expected}


@pytest.mark.parametrize("path", OTHERS, ids=lambda p: p.name)
def test_message_formats_not_claimed(path: Path) -> None:
    """ASTM, HL7 and RDML fixtures are not claimed by any tabular sniffer."""
    head = path.read_bytes()[:SNIFF_BYTES]
    assert {f.name for f in formats() if f.name in TABULAR and f.sniff(head, path.name) >= MIN_CONFIDENCE} == set()


def test_every_tabular_family_registered_once() -> None:
    """All eight tabular families are registered under their names."""
    assert TABULAR <= {f.name for f in formats()}
