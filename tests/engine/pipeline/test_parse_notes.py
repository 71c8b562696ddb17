"""A plate with one unnamed well: its named wells are decided, the unnamed one is kept with the run, not lost."""

from __future__ import annotations

import dataclasses
import json
import math

from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger import Ledger
from engine.pipeline import Engine


def test_unnamed_well_is_noted_with_the_run_and_the_other_pools_are_decided(data_dir: DataDir) -> None:
    """One pool's sample name erased on the export: every other pool is signed; the run's metadata names the well."""
    plate = simulate_plate(21, pool_size=2, prevalence=0.1)
    erased = next(w for w in plate.wells if w.pool_id and not all(math.isnan(ct) for ct in w.ct.values()))
    wells = [dataclasses.replace(w, sample_name="") if w is erased else w for w in plate.wells]
    export = quantstudio_text(dataclasses.replace(plate, wells=wells))
    write_atomically(data_dir.inbox / "m.csv", manifest_csv(plate.manifest))
    write_atomically(data_dir.inbox / "p.txt", export)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    untested = {r["specimen_id"] for r in plate.manifest if r["pool_id"] == erased.pool_id}
    with Ledger.open(data_dir.ledger, readonly=True) as ledger:
        decided = {sid for (sid,) in ledger.conn.execute("SELECT specimen_id FROM specimen_decisions")}
        (metadata,) = [json.loads(m) for (m,) in ledger.conn.execute("SELECT metadata FROM runs")]
    assert decided == set(plate.expected) - untested
    (note,) = json.loads(metadata["notes"])
    assert note["well"] == erased.position and "no sample name" in note["text"]
