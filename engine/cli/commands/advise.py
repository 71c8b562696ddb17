"""``ketqua advise [--prevalence P] [--max-pool K] [--json]``: which pooling pays at the lab's prevalence."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "advise",
        parents=[common],
        help="recommend a pool design and size for the lab's prevalence (tests per specimen, wrong calls)",
        description="Compare Dorfman pool sizes, 2-D arrays and combinatorial designs at a prevalence, within the kit's "
        "validated maximum pool size, and recommend the one with the fewest tests per specimen, with its error figures.",
    )
    p.add_argument(
        "--prevalence",
        type=float,
        metavar="P",
        help="share of positive specimens, e.g. 0.02 for 2 %%; default: estimated from the ledger's recent results (read-only)",
    )
    p.add_argument("--recent", type=int, default=5_000, metavar="N", help="results the ledger estimate uses (most recent first)")
    p.add_argument("--max-pool", type=int, default=10, metavar="K", help="the kit's validated maximum specimens per pool (default 10)")
    p.add_argument("--noise", default="dilution", help="noise model for the error figures (as ketqua simulate; default dilution)")
    p.add_argument("--specimens", type=int, default=200_000, metavar="N", help="specimens simulated per shortlisted design")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.ledger.sqlite import Ledger
    from engine.pooling.advise import advise, estimate_prevalence

    estimate = None
    prevalence = args.prevalence
    if prevalence is None:
        with Ledger.open(DataDir.at(args.data).ledger, readonly=True) as ledger:
            estimate = estimate_prevalence(ledger.results(current_only=True), last=args.recent)
        # no positive yet is not zero prevalence: advise for the interval's upper end
        prevalence = estimate["prevalence"] or estimate["interval"][1]
    report = advise(prevalence, max_pool=args.max_pool, noise=args.noise, specimens=args.specimens, seed=args.seed)
    if estimate is not None:
        report["prevalence_estimate"] = estimate
    if args.json:
        print(json.dumps(report))
        return 0
    out = sys.stdout
    out.write(f"recommended  {report['design']}  ({report['tests_per_specimen']:.4f} tests per specimen at {report['prevalence']:g} prevalence)\n\n")
    if estimate is not None:
        lo, hi = estimate["interval"]
        out.write(f"prevalence   {estimate['positives']} POSITIVE of the {estimate['results']} most recent results in the ledger: "
                  f"{estimate['prevalence']:.2%} (95 % {lo:.2%}–{hi:.2%})\n")
    out.write(report["reason"] + "\n\n")
    out.write(f"  {'design':<16} {'pool':>4} {'tests/spec':>10} {'under noise':>11} {'wrong POS':>10} {'wrong NEG':>10} {'sens. lost':>10}\n")
    out.write(f"  {'':<16} {'':>4} {'':>10} {'':>11} {'per 10^5':>10} {'per 10^5':>10} {'':>10}\n")
    for c in report["candidates"]:
        noisy = c.get("tests_per_specimen_under_noise")
        cells = [
            f"{c['design']:<16}",
            f"{c['pool_size']:>4}",
            f"{c['tests_per_specimen']:>10.4f}",
            f"{noisy:>11.4f}" if noisy is not None else f"{'—':>11}",
            f"{c['wrong_positive_per_100k']:>10.1f}" if "wrong_positive_per_100k" in c else f"{'—':>10}",
            f"{c['wrong_negative_per_100k']:>10.1f}" if "wrong_negative_per_100k" in c else f"{'—':>10}",
            f"{c['sensitivity_loss']:>10.4f}" if c.get("sensitivity_loss") is not None else f"{'—':>10}",
        ]
        out.write("  " + " ".join(cells) + "\n")
    out.write(f"\n  noise model {report['noise']}; pooled positives confirmed individually; pooling stops paying above "
              f"{report['stops_paying_above'] * 100:.3g} % positives\n")
    return 0
