"""``ketqua demo``: generate a realistic plate and its manifest into the inbox, process them, summarise."""

from __future__ import annotations

import argparse
import json

from engine.cli.commands.run import add_pipeline_options, open_engine


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("demo", parents=[common], help="simulate a plate + manifest, run the pipeline once, print a summary")
    p.add_argument("--seed", type=int, help="plate simulation seed (default: one more than the runs already in the ledger)")
    p.add_argument("--size", type=int, choices=(96, 384), default=96, help="plate size (wells)")
    p.add_argument("--pool-size", type=int, default=10, help="specimens per pool (Dorfman)")
    add_pipeline_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.demo import manifest_csv, quantstudio_text, simulate_plate
    from engine.config import read_config_file
    from engine.files import write_atomically
    from engine.results.signer import production_signer
    from signing.pki import ensure_development_pki

    data = DataDir.at(args.data).create()
    config, _ = read_config_file(data)
    # A demo's data folder has the development PKI (keys/ca.pem is what `ketqua verify` trusts by default),
    # unless the lab configured its production signer: then no development key is made beside it.
    if not production_signer((config or {}).get("signing")):
        ensure_development_pki(data.keys)
    engine = open_engine(args)
    data = engine.data
    try:
        seed = args.seed if args.seed is not None else len(engine.ledger.files(kind="analyzer")) + 1
        plate = simulate_plate(seed, size=args.size, pool_size=args.pool_size)
        plate_file = data.inbox / f"{plate.name}.txt"
        manifest_file = data.inbox / f"{plate.name}-manifest.csv"
        # Manifest first, the way the sampling platform usually sends it; either order works.
        write_atomically(manifest_file, manifest_csv(plate.manifest))
        write_atomically(plate_file, quantstudio_text(plate))
        summary = engine.run_once()
        pools = sum(1 for w in plate.wells if w.pool_id and w.pool_id not in plate.expected)
        detected = sum(1 for w in plate.wells if w.pool_id and any(v == v for k, v in w.ct.items() if k != "MS2"))
        report = {
            "data": str(data.root),
            "plate": plate.name,
            "files": {"plate": plate_file.name, "manifest": manifest_file.name},
            "wells": len(plate.wells),
            "pools": pools,
            "pools_with_signal": detected,
            "specimens": len(plate.expected),
            "expected": plate.expected_counts(),
            **summary.as_dict(),
            "certificates_dir": str(data.certificates),
        }
    finally:
        engine.close()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())) or "none"
    print(f"ketqua demo — data folder {report['data']}")
    print(f"  plate      {plate.name}: {report['wells']} wells, QuantStudio 5 export {plate_file.name}")
    print(f"  manifest   {manifest_file.name}: {len(plate.manifest)} rows")
    print(f"  files      {summary.files} received, {summary.duplicates} duplicate, {summary.quarantined} quarantined, {summary.waiting} waiting for a manifest")
    print(f"  pools      {pools} pools of {args.pool_size} (+ {len(plate.wells) - pools - 2} specimens tested alone, PC, NTC); {detected} wells with viral signal")
    print(f"  specimens  {report['specimens']} decided")
    print(f"  signed     {summary.signed} results this run; current results in the ledger: {outcomes}")
    print(f"  retests    {summary.retests} specimens need an individual run or a new swab (`ketqua retests`)")
    if summary.certificates:
        print(f"  certificates {summary.certificates} signed PDFs in {report['certificates_dir']}")
    print(f"  elapsed    {summary.seconds:.2f} s (signed results committed after {summary.seconds_to_signed:.2f} s)")
    return 0
