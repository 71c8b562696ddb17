"""``ketqua simulate --design SPEC …``: Monte Carlo of a design + decoder with realistic Cts."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "simulate",
        parents=[common],
        help="simulate a pool design and decoder: tests per specimen, recovery, wrong certain calls",
    )
    p.add_argument("--design", required=True, metavar="SPEC", help="e.g. dorfman:10, array:16x24, pbest:384x48, kirkman:31, std:384:7:7")
    p.add_argument("--specimens", type=int, default=100_000, metavar="N", help="specimens to simulate (rounded up to whole batches)")
    p.add_argument("--prevalence", type=float, default=0.01, metavar="P", help="share of infected specimens (default 0.01)")
    p.add_argument("--positives", type=int, metavar="D", help="exactly D infected specimens in every batch, instead of --prevalence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", default="none", help="none | dilution | fn=F,fp=F,sd=S (comma-separated); see docs")
    p.add_argument("--decoder", default="auto", help="auto (strongest that applies), dorfman, comp, dd, scomp, exact, bp, ctq")
    p.add_argument("--cutoff", type=float, default=37.0, help="Ct cut-off (cycles) for the dilution model")
    p.add_argument("--ct-range", default="15:38", metavar="LO:HI", help="individual Ct range of infected specimens (uniform)")
    p.add_argument("--confidence", type=float, default=1e-6, help="posterior error allowed per call (bp decoder)")
    p.add_argument(
        "--negatives-from-bound",
        action="store_true",
        help="let exact/ctq call NEGATIVE a specimen in no explanation within the positives bound (default: RETEST)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import DesignError
    from engine.pooling.simulate import simulate

    try:
        lo, hi = (float(x) for x in args.ct_range.split(":"))
    except ValueError:
        raise DesignError(f"--ct-range must look like 15:38, got '{args.ct_range}'") from None
    report = simulate(
        args.design,
        specimens=args.specimens,
        prevalence=None if args.positives is not None else args.prevalence,
        positives=args.positives,
        seed=args.seed,
        noise=args.noise,
        decoder=args.decoder,
        cutoff=args.cutoff,
        ct_range=(lo, hi),
        confidence=args.confidence,
        negatives_from_bound=args.negatives_from_bound,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    out = sys.stdout
    out.write(f"design {report['design']}, decoder {report['decoder']}, noise {report['noise']}, {report['batches']} batches of {report['batch_size']}\n")
    rows = [
        ("specimens", f"{report['specimens']}"),
        ("tests", f"{report['tests']}"),
        ("tests per specimen", f"{report['tests_per_specimen']:.4f}"),
        ("exact recovery", f"{report['exact_recovery']:.4f}"),
        ("fully resolved", f"{report['fully_resolved']:.4f}"),
        ("sensitivity", "n/a" if report["sensitivity"] is None else f"{report['sensitivity']:.4f}"),
        ("specificity", "n/a" if report["specificity"] is None else f"{report['specificity']:.6f}"),
        ("retest rate", f"{report['retest_rate']:.4f}"),
        ("wrong certain calls", f"{report['wrong_certain_calls']} ({report['wrong_certain_per_million']:.2f} per 10^6)"),
    ]
    for name, value in rows:
        out.write(f"  {name:<20} {value}\n")
    return 0
