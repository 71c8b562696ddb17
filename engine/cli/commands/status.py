"""``ketqua status``: one place that shows what is waiting, and for how long.

Files in the inbox not taken yet (with why they wait), plates waiting for a
manifest (their missing pools, when they will be quarantined), manifest pools
no plate has measured yet, quarantined and parked files, and open retests.

Read-only: the inbox is only listed and read, the ledger opened ``mode=ro``, so
it runs beside ``ketqua run``; a fresh or empty data folder shows nothing waiting.
Ages are measured against one ``now`` (injected in tests): text output prints
them as "3 h 12 min", ``--json`` as whole seconds next to ISO 8601 UTC times.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import IntakeSettings
    from engine.datadir import DataDir
    from engine.ledger.sqlite import Ledger

#: Pool ids / missing pools quoted per line in the text output (--json lists all).
_EXAMPLES = 5


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "status", parents=[common], help="what is waiting: inbox files, plates without manifest, pools without plate, quarantine, retests"
    )
    p.add_argument("--json", action="store_true", help="one JSON object (ages in seconds, times ISO 8601 UTC)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir

    snapshot = collect(DataDir.at(args.data), now=datetime.now(UTC))
    print(json.dumps(snapshot, ensure_ascii=False, indent=2) if args.json else render(snapshot))
    return 0


# ---------------------------------------------------------------------------- collecting
def collect(data: "DataDir", *, now: datetime) -> dict[str, Any]:
    """Everything waiting in ``data`` at ``now`` (an aware datetime), as plain JSON-ready data."""
    from engine.config import IntakeSettings, load_config
    from engine.datadir import lock_holder
    from engine.errors import ConfigError

    notes: list[str] = []
    try:
        settings = load_config(data).intake
    except ConfigError as exc:
        settings = IntakeSettings()
        notes.append(f"configuration not read ({exc}); default intake settings assumed")
    snapshot: dict[str, Any] = {
        "data": str(data.root),
        "now": _iso(now),
        "inbox": _inbox(data.inbox, settings, now, lock_holder(data)),
        "plates_waiting_manifest": [],
        "plates_waiting_release": [],
        "pools_waiting_plate": [],
        "quarantined": [],
        "parked": [],
        "retests": {"open": 0, "rerun": 0, "recollect": 0, "oldest": None},
        "notes": notes,
    }
    ledger = _open_ledger(data, notes)
    if ledger is not None:
        with ledger:
            snapshot.update(_from_ledger(ledger, data, settings, now))
    return snapshot


def _open_ledger(data: "DataDir", notes: list[str]) -> "Ledger | None":
    from engine.errors import LedgerError
    from engine.ledger.sqlite import Ledger

    if not data.ledger.exists():
        notes.append("no ledger yet: nothing has been received")
        return None
    try:
        ledger = Ledger.open(data.ledger, readonly=True)
    except LedgerError as exc:
        notes.append(str(exc))
        return None
    if ledger.schema_version == 0:  # created but never migrated (ketqua run is starting)
        ledger.close()
        notes.append("the ledger is still being created")
        return None
    return ledger


def _inbox(inbox: Path, settings: "IntakeSettings", now: datetime, holder: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Files still in the inbox, oldest first, each with the reason it has not been taken."""
    from engine.intake.watcher import IGNORED_SUFFIXES

    if not inbox.is_dir():
        return []
    found: list[tuple[float, str, dict[str, Any]]] = []
    walker = os.walk(inbox, followlinks=False) if settings.recursive else [(str(inbox), [], [e.name for e in os.scandir(inbox)])]
    for folder, dirs, names in walker:
        dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
        for name in names:
            path = Path(folder) / name
            rel = path.relative_to(inbox).as_posix()
            try:
                st = path.lstat()
            except OSError:
                continue  # taken meanwhile
            lower = name.lower()
            temporary = lower.endswith(IGNORED_SUFFIXES) and not lower.endswith(".error.txt")
            if (name.startswith((".", "~$")) and not temporary) or lower.endswith(".error.txt"):
                continue  # hidden files, Excel lock files and notes are never taken, so never waiting
            if not (path.is_symlink() or path.is_file()):
                continue
            age = now.timestamp() - st.st_mtime
            item = {
                "name": rel,
                "size": st.st_size,
                "modified_at": _iso(datetime.fromtimestamp(st.st_mtime, UTC)),
                "age_seconds": _seconds(age),
                "waiting_for": _inbox_reason(path, rel, temporary, age, settings, holder),
            }
            found.append((st.st_mtime, rel, item))
    return [item for _, _, item in sorted(found, key=lambda f: f[:2])]


def _inbox_reason(path: Path, rel: str, temporary: bool, age: float, settings: "IntakeSettings", holder: dict[str, Any] | None) -> str:
    from parsers import incomplete

    if path.is_symlink():
        return "a symbolic link: intake moves it to quarantine/; copy the real file into the inbox"
    if temporary:
        return "a temporary name: taken once the sender renames it to its final name"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    why = incomplete(data, rel)
    if why is not None:
        return f"not complete yet: {why}"
    if age < settings.stable_seconds:
        return f"still changing: taken once unchanged for {settings.stable_seconds:g} s"
    if holder is None:
        return "complete; nothing is taking files from this inbox: start `ketqua run` (or `ketqua ingest`)"
    return (f"complete by its format; `{holder.get('command', 'ketqua run')}` (pid {holder.get('pid', '?')}) takes it once it has"
            " stayed unchanged long enough (a file seen growing waits twice its writer's longest pause)")


def _from_ledger(ledger: "Ledger", data: "DataDir", settings: "IntakeSettings", now: datetime) -> dict[str, Any]:
    wait_limit = settings.manifest_wait_hours * 3600
    waits = ledger.latest_events("waiting_manifest")
    plates = []
    for row in ledger.files(["waiting_manifest"], kind="analyzer"):
        detail = waits.get(row["sha256"], {}).get("detail", {})
        missing = list(detail.get("missing_pools", []))
        age = _age(row["received_at"], now)
        plates.append(
            {
                "name": row["name"],
                "sha256": row["sha256"],
                "received_at": row["received_at"],
                "age_seconds": _seconds(age),
                "missing": int(detail.get("missing", len(missing))),
                "missing_pools": missing,  # the first 20, as the engine recorded them
                "quarantine_in_seconds": _seconds(max(0.0, wait_limit - age)),
            }
        )
    pools = [
        {
            "pool_id": r["pool_id"],
            "specimens": r["specimens"],
            "manifest": r["manifest_name"],
            "manifest_sha256": r["manifest"],
            "received_at": r["received_at"],
            "age_seconds": _seconds(_age(r["received_at"], now)),
        }
        for r in ledger.pools_without_plate()
    ]
    copies = ledger.latest_events("quarantined")
    quarantined = []
    for row in ledger.files(["quarantined"]):
        event = copies.get(row["sha256"], {})
        detail = event.get("detail", {})
        copy = detail.get("copy") or Path(row["name"]).name
        since = event.get("at") or row["updated_at"]
        quarantined.append(
            {
                "name": row["name"],
                "sha256": row["sha256"],
                "kind": row["kind"],
                "reason": detail.get("reason"),
                "error": row["error"],
                "report": str(Path(data.quarantine.name) / f"{copy}.error.txt"),
                "quarantined_at": since,
                "age_seconds": _seconds(_age(since, now)),
            }
        )
    parked = [
        {
            "name": row["name"],
            "sha256": row["sha256"],
            "error": row["error"],
            "attempts": row["attempts"],
            "parked_at": row["updated_at"],
            "age_seconds": _seconds(_age(row["updated_at"], now)),
        }
        for row in ledger.files(["parked"])
    ]
    open_retests = ledger.open_retests()  # oldest first
    retests: dict[str, Any] = {
        "open": len(open_retests),
        "rerun": sum(1 for r in open_retests if r["kind"] == "rerun"),
        "recollect": sum(1 for r in open_retests if r["kind"] == "recollect"),
        "oldest": None,
    }
    if open_retests:
        first = open_retests[0]
        retests["oldest"] = {
            "specimen_id": first["specimen_id"],
            "kind": first["kind"],
            "created_at": first["created_at"],
            "age_seconds": _seconds(_age(first["created_at"], now)),
        }
    # [results] release = "review": decided, nothing signed, until a reviewer releases the plate in the console.
    held = [
        {"name": row["name"], "sha256": row["sha256"], "decided_at": row["updated_at"],
         "age_seconds": _seconds(_age(row["updated_at"], now))}
        for row in ledger.files(["parsed"], kind="analyzer")
    ]
    return {"plates_waiting_manifest": plates, "plates_waiting_release": held, "pools_waiting_plate": pools, "quarantined": quarantined, "parked": parked, "retests": retests}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _age(stamp: str, now: datetime) -> float:
    """Seconds from a ledger timestamp (ISO 8601 UTC) to ``now``."""
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _seconds(value: float) -> int:
    return max(0, int(value))


# ---------------------------------------------------------------------------- text
def human_age(seconds: float) -> str:
    """A duration as a technician reads it: "45 s", "12 min", "3 h 12 min", "2 d 4 h"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def human_size(size: int) -> str:
    """Bytes as "850 B", "12 KB", "1.2 MB"."""
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024**2:.1f} MB"


def _first_line(text: str | None) -> str:
    return (text or "no reason recorded").strip().splitlines()[0] if (text or "").strip() else "no reason recorded"


def _examples(ids: list[str], total: int) -> str:
    shown = ", ".join(ids[:_EXAMPLES])
    return shown + (", …" if total > min(len(ids), _EXAMPLES) else "")


def render(snapshot: dict[str, Any]) -> str:
    """The snapshot as text, one section per kind of wait, oldest first."""
    out = [f"ketqua status of {snapshot['data']} at {snapshot['now']}"]
    out += [f"note: {n}" for n in snapshot["notes"]]

    def section(title: str, items: list[Any], lines: list[str]) -> None:
        out.append(f"{title}: {len(items) if items else 'none'}")
        out.extend(f"  {line}" for line in lines)

    inbox = snapshot["inbox"]
    section(
        "Files in the inbox not taken yet",
        inbox,
        [f"{f['name']}  {human_size(f['size'])}, for {human_age(f['age_seconds'])}: {f['waiting_for']}" for f in inbox],
    )
    plates = snapshot["plates_waiting_manifest"]
    section(
        "Plates waiting for a manifest",
        plates,
        [
            f"{p['name']}  for {human_age(p['age_seconds'])}: {p['missing']} pool(s) in no manifest"
            f" ({_examples(p['missing_pools'], p['missing'])}); quarantined in {human_age(p['quarantine_in_seconds'])} unless one arrives"
            for p in plates
        ],
    )
    held = snapshot["plates_waiting_release"]
    section(
        "Plates waiting for a reviewer's release ([results] release = \"review\"; release them in the console)",
        held,
        [f"{h['name']}  decided {human_age(h['age_seconds'])} ago; nothing signed yet" for h in held],
    )
    pools = snapshot["pools_waiting_plate"]
    by_manifest: dict[str, list[dict[str, Any]]] = {}
    for pool in pools:
        by_manifest.setdefault(pool["manifest_sha256"], []).append(pool)
    section(
        "Manifest pools waiting for a plate",
        pools,
        [
            f"{group[0]['manifest']}  for {human_age(group[0]['age_seconds'])}: {len(group)} pool(s)"
            f" ({_examples([p['pool_id'] for p in group], len(group))})"
            for group in by_manifest.values()
        ],
    )
    quarantined = snapshot["quarantined"]
    section(
        "Quarantined files",
        quarantined,
        [
            f"{q['name']}  for {human_age(q['age_seconds'])}: {_first_line(q['error'] or q['reason'])} (read {q['report']})"
            for q in quarantined
        ],
    )
    parked = snapshot["parked"]
    section(
        "Parked files (failed repeatedly; `ketqua ingest --retry-parked` puts them back in line)",
        parked,
        [f"{p['name']}  for {human_age(p['age_seconds'])} after {p['attempts']} attempt(s): {p['error'] or ''}" for p in parked],
    )
    retests = snapshot["retests"]
    if retests["open"]:
        oldest = retests["oldest"]
        out.append(
            f"Retests: {retests['open']} open ({retests['rerun']} individual run(s) from the stored aliquot,"
            f" {retests['recollect']} new swab(s)); oldest {oldest['specimen_id']} for {human_age(oldest['age_seconds'])}."
            " `ketqua retests` lists them."
        )
    else:
        out.append("Retests: none")
    return "\n".join(out)
