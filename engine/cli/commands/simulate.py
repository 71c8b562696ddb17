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
    p.add_argument("--specimens", type=int, default=100_000, metavar="N", help="specimens to simulate (exactly: the last plate may be partly filled; with --positives, whole batches, said in the report)")
    p.add_argument("--prevalence", type=float, default=0.01, metavar="P", help="share of infected specimens (default 0.01)")
    p.add_argument("--positives", type=int, metavar="D", help="exactly D infected specimens in every batch, instead of --prevalence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", default="none", help="none | dilution | fn=F,fp=F,sd=S (comma-separated); see docs")
    p.add_argument(
        "--decoder",
        default="auto",
        help="auto = what the production pipeline does (dorfman for disjoint pools, dd otherwise); or dorfman, comp, dd, scomp, exact, minerr, bp, ctq",
    )
    p.add_argument(
        "--confirm-positives",
        action="store_true",
        help="test every POSITIVE decoded from pools individually before signing it (the report shows both choices)",
    )
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
        confirm_positives=args.confirm_positives,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    sys.stdout.write(format_report(report))
    return 0


def _share(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(report: dict) -> str:
    """The simulation as a lab manager reads it: cost, then what goes wrong, per 10^5 specimens."""
    alt = report["alternative"]
    conf = "confirmed individually" if report["confirm_positives"] else "signed as decoded"
    lines = [
        (f"design {report['design']}, decoder {report['decoder']} ({report['policy']} policy), noise {report['noise']}, "
        f"{report['specimens']} specimens in {report['batches']} batches of {report['batch_size']}"),
    ]
    lo, hi = report["tests_per_specimen_ci"]
    rows = [
        ("tests", f"{report['tests']} = {report['stage1_tests']} pools + {report['stage2_tests']} stage-2 retests + {report['confirmation_tests']} confirmations"),
        ("tests per specimen", f"{report['tests_per_specimen']:.4f} (95 % {lo:.4f}–{hi:.4f}; 1 = testing everyone alone)"),
        ("pooled positives", conf),
        ("wrong POSITIVE", f"{report['wrong_positive_per_100k']:.2f} per 10^5 specimens ({report['wrong_positive_calls']})"),
        ("wrong NEGATIVE", f"{report['wrong_negative_per_100k']:.2f} per 10^5 specimens ({report['wrong_negative_calls']})"),
        ("sensitivity", (f"{_share(report['sensitivity'])} (testing alone: {_share(report['individual_sensitivity'])}; "
                        f"lost to pooling: {_share(report['sensitivity_loss'])})")),
        ("specificity", _share(report["specificity"], 6)),
        ("retest rate", f"{report['retest_rate']:.4f}"),
        ("all calls right", f"{report['exact_recovery']:.4f} of batches (after stage 2 and confirmations)"),
        ("decoder errors", f"{report['wrong_certain_calls']} wrong stage-1 calls ({report['wrong_certain_per_million']:.2f} per 10^6)"),
    ]
    if report["confirmation_rate"] or report["stage1_exact"]:
        rows.append(("found in stage 1", f"{report['stage1_exact']:.4f} of batches had exactly their positives called by the pools alone"))
    lines += [f"  {name:<19} {value}" for name, value in rows]
    other = "confirming pooled positives individually" if alt["confirm_positives"] else "signing pooled positives as decoded"
    lines.append(
        f"  {other}: {alt['tests_per_specimen']:.4f} tests per specimen, {alt['wrong_positive_per_100k']:.2f} wrong POSITIVE "
        f"and {alt['wrong_negative_per_100k']:.2f} wrong NEGATIVE per 10^5"
    )
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
