"""The shared model: the canonical well table and the outcome vocabulary.

Every parser returns a table with :data:`WELL_SCHEMA`; every later stage reads
it. The table's contract (``WELL_SCHEMA``, ``Role``, ``well_table``) is the
parsers' own (:mod:`parsers.schema`) and is re-exported here. Outcomes are ``str`` enums so they serialise as the words DESIGN.md uses.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from parsers.schema import (  # noqa: F401  (the parsers' output contract, re-exported for the engine)
    ROLE_TYPE,
    RUN_METADATA_KEYS,
    WELL_COLUMNS,
    WELL_SCHEMA,
    Role,
    run_metadata,
    well_table,
)


class PoolOutcome(str, enum.Enum):
    """Call for one pool or tube after the assay rule (lower case, as DESIGN.md writes it)."""

    DETECTED = "detected"
    NOT_DETECTED = "not_detected"
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"


class SpecimenOutcome(str, enum.Enum):
    """Call for one person's specimen after decoding; only SIGNED_OUTCOMES become results."""

    POSITIVE = "POSITIVE"
    NEGATIVE = "NEGATIVE"
    INCONCLUSIVE = "INCONCLUSIVE"  # re-collect; signed
    RETEST = "RETEST"  # the lab must test individually; not a result
    INVALID = "INVALID"  # the run failed; not a result


#: A person's fields as manifests carry them, results sign them and the ledger stores them (one list for all three).
PERSON_FIELDS = ("full_name", "date_of_birth", "sex", "national_id", "phone", "address")
#: A specimen's manifest fields: the person's, then where and when it was collected.
SPECIMEN_FIELDS = PERSON_FIELDS + ("collected_at", "collection_site")

SIGNED_OUTCOMES = frozenset({SpecimenOutcome.POSITIVE, SpecimenOutcome.NEGATIVE, SpecimenOutcome.INCONCLUSIVE})

#: Pool outcome codes used by numeric kernels (int8 arrays). -1 = no result for that pool.
POOL_CODE = {
    PoolOutcome.NOT_DETECTED: 0,
    PoolOutcome.DETECTED: 1,
    PoolOutcome.INCONCLUSIVE: 2,
    PoolOutcome.INVALID: 3,
}
POOL_MISSING = -1

#: Specimen outcome codes used by numeric kernels (int8 arrays).
SPECIMEN_CODE = {
    SpecimenOutcome.NEGATIVE: 0,
    SpecimenOutcome.POSITIVE: 1,
    SpecimenOutcome.INCONCLUSIVE: 2,
    SpecimenOutcome.RETEST: 3,
    SpecimenOutcome.INVALID: 4,
}
SPECIMEN_BY_CODE = {code: outcome for outcome, code in SPECIMEN_CODE.items()}

def rows_as_dicts(table: pa.Table, columns: Sequence[str] = WELL_COLUMNS) -> list[dict[str, Any]]:
    """Canonical rows as JSON-ready dicts (NaN Ct becomes None). For output, not hot paths."""
    out = table.select(list(columns)).to_pylist()
    for row in out:
        ct = row.get("ct")
        if ct is not None and ct != ct:
            row["ct"] = None
    return out
