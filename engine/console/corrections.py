"""A correction made in the console, through the same path as a corrected manifest.

The engine already knows how a person's record changes after signing: a newer
manifest row arrives, :meth:`Ledger.corrections_for` finds the signed
specimens it changes, :func:`engine.results.corrected_payload` builds the next
version, :func:`engine.results.signed.sign_corrections` signs it, and
:meth:`Ledger.commit_manifest` stores the row and the new version in one
transaction. A console correction is exactly that, with a manifest of one
specimen written by the console:

1. the edited record becomes a one-specimen manifest (CSV, one row per pool
   the specimen is in), read back with :func:`engine.intake.manifest.read_manifest`,
   so it meets every rule a dropped manifest meets (lengths, phone, dates,
   control characters), with the same error messages;
2. it is signed off the event loop (worker thread);
3. the manifest bytes are archived by SHA-256 and received as a file of kind
   ``manifest`` and committed with the new version, back to back on the event
   loop thread, which is also the thread on which ``ketqua run`` handles
   manifests: the pipeline cannot take the console's file in between.

Who and why: the reason recorded in the ledger and signed into the payload's
``correction.reason`` is the person's reason followed by the user name and
role (and the approving reviewer's, under four eyes); the audit trail has the
rest. Nothing is overwritten: the old version stays, marked superseded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.console.store import ConsoleStore, stamp
from engine.errors import LedgerError, ManifestError
from engine.intake.manifest import read_manifest
from engine.intake.watcher import write_archive
from engine.ledger.records import ConflictError
from engine.model import SPECIMEN_FIELDS
from engine.results.signed import corrected_payload, sign_corrections, utc_instant

#: The fields a console user may correct (a specimen's id and pools are not personal data to edit).
EDITABLE = ("full_name", "date_of_birth", "sex", "national_id", "phone", "address", "collected_at", "collection_site")
_HEADER = ("pool_id", "specimen_id", *SPECIMEN_FIELDS, "aliquot")


class CorrectionError(LedgerError):
    """A correction that cannot be made as asked (nothing changed, the result moved on, invalid data)."""

    def __init__(self, message: str, *, key: str, **values: Any) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Applied:
    """A signed correction: the result, the new version and the one it supersedes."""

    result_id: str
    version: int
    supersedes: int


def proposed_record(current: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The specimen record as it would be after the edit (untouched fields as they are)."""
    record = {k: current.get(k) for k in SPECIMEN_FIELDS}
    for key in EDITABLE:
        if key in fields:
            record[key] = fields[key].strip()
    return record


def changed_fields(current: dict[str, Any], record: dict[str, Any]) -> list[str]:
    return [f for f in SPECIMEN_FIELDS if (current.get(f) or None) != (record.get(f) or None)]


def _cell(value: Any) -> str:
    # Verbatim, not engine.csvsafe: this file is input that ketqua reads back, and a name that
    # starts with "-" or "=" must arrive unchanged (the console never offers it to a spreadsheet).
    text = "" if value is None else str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def manifest_bytes(specimen_id: str, pools: list[str], record: dict[str, Any], aliquot: bool) -> bytes:
    """A one-specimen manifest in the sampling platform's layout (UTF-8, header row, one row per pool)."""
    lines = [",".join(_HEADER)]
    for pool in pools or [specimen_id]:
        lines.append(",".join(_cell(v) for v in (pool, specimen_id, *(record.get(f) for f in SPECIMEN_FIELDS), "yes" if aliquot else "no")))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def who_and_why(reason: str, user: str, role: str, approved_by: tuple[str, str] | None = None) -> str:
    """The reason signed into the payload: what the person wrote, then who made (and approved) the correction."""
    text = f"{reason.strip()} — {user} ({role}), lab console"
    if approved_by:
        text += f", approved by {approved_by[0]} ({approved_by[1]})"
    return text


def check_request(store: ConsoleStore, result_id: str, based_on: int, fields: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(latest result row, proposed record, changed fields) for an edit of ``result_id`` seen at version ``based_on``."""
    latest = store.ledger.get_result(result_id)
    if latest is None:
        raise CorrectionError(f"no result {result_id}", key="error.404")
    if int(latest["version"]) != based_on:
        raise CorrectionError("the result moved on", key="correct.moved", v=latest["version"])
    current = store.specimen(latest["specimen_id"]) or {}
    record = proposed_record(current, fields)
    changed = changed_fields(current, record)
    if not changed:
        raise CorrectionError("nothing changed", key="correct.unchanged")
    return latest, record, changed


async def apply_correction(
    store: ConsoleStore,
    archive: Path,
    signer_spec: Any,
    hc1_validity_days: int,
    *,
    result_id: str,
    based_on: int,
    fields: dict[str, str],
    reason: str,
) -> Applied:
    """Sign and commit the next version of ``result_id`` with the edited person record (see the module docstring)."""
    latest, record, _changed = check_request(store, result_id, based_on, fields)
    sid = latest["specimen_id"]
    current = store.specimen(sid) or {}
    now = store.clock()
    data = manifest_bytes(sid, store.pools_of(sid), record, bool(current.get("aliquot")))
    # The ledger names a file by the SHA-256 of its bytes. The same bytes again (B → A → B) are a duplicate
    # receipt of an archived file, and the commit below still records the new version against it.
    sha = hashlib.sha256(data).hexdigest()
    name = f"console-correction-{now:%Y%m%dT%H%M%S}-{sid}.csv"
    try:
        rows = read_manifest(data, name).to_pylist()
    except ManifestError as exc:
        raise CorrectionError(str(exc), key="correct.invalid", why=str(exc).replace(name, "").strip(" :,")) from exc
    ledger = store.ledger
    for _attempt in range(3):
        pending = ledger.corrections_for(rows)
        if not pending:
            raise CorrectionError("nothing changed", key="correct.unchanged")
        previous = ledger.latest_versions([sid])[sid]
        if int(previous["version"]) != based_on:
            raise CorrectionError("the result moved on", key="correct.moved", v=previous["version"])
        payload = corrected_payload(json.loads(previous["payload"]), pending[0]["record"], reason=reason, issued_at=utc_instant(stamp(now)))
        items = [{"payload": payload, "run_id": previous["run_id"]}]
        signed = await asyncio.get_running_loop().run_in_executor(None, sign_corrections, items, signer_spec, hc1_validity_days)
        # From here to the commit, no await: the pipeline handles manifests on this same thread.
        write_archive(archive, sha, data)
        ledger.receive_file(sha, name, len(data), "manifest")
        try:
            ledger.commit_manifest(sha, rows, signed)
        except ConflictError:
            continue  # a plate signed this specimen meanwhile: sign again against the new latest version
        return Applied(result_id, int(payload["version"]), based_on)
    # Never left "received": the pipeline would apply it without the person's reason.
    ledger.set_file_state(sha, "quarantined", error="the result kept changing while the console's correction was signed", event="quarantined", reason="correction")
    raise CorrectionError("the result kept changing", key="correct.moved", v="?")
