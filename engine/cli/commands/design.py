"""``ketqua design SPEC``: generate (or load) a pool design and report its properties."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from engine.pooling.designs import GENERATORS

    usage = "; ".join(u for _, u in GENERATORS.values())
    p = subparsers.add_parser(
        "design",
        parents=[common],
        help="generate a pool design and report its properties",
        description=f"Generate a pool design from a spec and report pools, weight, pool size and disjunctness. Specs: {usage}.",
    )
    p.add_argument("spec", nargs="?", help="design spec, e.g. dorfman:10, array:16x24, pbest:384x48, kirkman:15, std:384:7:7")
    p.add_argument("--file", metavar="PATH", help="load the design from a text file instead (0/1 rows per pool, or 'specimen: pools' lines)")
    p.add_argument("--manifest", metavar="CSV", help="load the design from a pool manifest instead")
    p.add_argument("--specimens", type=int, metavar="N", help="specimens per batch, where the family allows it")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--matrix", metavar="PATH", help="also write the incidence matrix (one 0/1 line per pool)")
    p.add_argument("--worklist", metavar="CSV", help="also write the pipetting worklist (tube → pool well)")
    p.add_argument("--plate-format", type=int, choices=(96, 384), default=96, help="pool plate format for the worklist")
    p.add_argument("--volume", type=float, default=10.0, metavar="UL", help="µL of each specimen per pool (worklist)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import DesignError
    from engine.pooling import design_from_manifest, generate, load_design, properties
    from engine.pooling.worklist import write_worklist

    if args.file:
        design = load_design(Path(args.file).read_text(encoding="utf-8"), source=args.file)
    elif args.manifest:
        from engine.intake.manifest import read_manifest

        design = design_from_manifest(read_manifest(Path(args.manifest).read_bytes(), args.manifest))
    elif args.spec:
        design = generate(args.spec, args.specimens)
    else:
        raise DesignError("give a design spec (e.g. pbest:384x48), --file PATH or --manifest CSV")
    report = properties(design)
    if args.matrix:
        Path(args.matrix).write_text("\n".join("".join("1" if x else "0" for x in row) for row in design.incidence) + "\n", encoding="utf-8")
        report["matrix"] = args.matrix
    if args.worklist:
        with open(args.worklist, "w", newline="", encoding="utf-8") as fh:
            write_worklist(design, fh, plate_format=args.plate_format, volume_ul=args.volume)
        report["worklist"] = args.worklist
    if args.json:
        print(json.dumps(report))
        return 0
    out = sys.stdout
    out.write(f"design      {report['spec']} ({report['kind']})\n")
    out.write(f"specimens   {report['specimens']}\n")
    out.write(f"pools       {report['pools']}  ({report['tests_per_specimen_stage1']:.4f} stage-1 tests per specimen)\n")
    out.write(f"weight      {report['weight']['min']}–{report['weight']['max']} pools per specimen\n")
    out.write(f"pool size   {report['pool_size']['min']}–{report['pool_size']['max']} specimens per pool\n")
    out.write(f"overlap     any two specimens share at most {report['max_overlap']} pool(s)\n")
    out.write(
        f"disjunct    {report['disjunct']}-disjunct (checked exhaustively up to 2); guaranteed by overlaps: "
        f"{report['disjunct_guaranteed']} — up to that many positives per batch decode exactly\n"
    )
    for key in ("matrix", "worklist"):
        if key in report:
            out.write(f"{key:<11} written to {report[key]}\n")
    return 0
