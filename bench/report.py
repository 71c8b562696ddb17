"""``python -m bench.report [bench.json]``: the figures of a run as a Markdown table (for bench/README.md).

Generated from the JSON rather than copied by hand, so the README shows exactly
what a run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.runner import DEFAULT_OUT


def _rate(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:.2f}{suffix} {unit}/s"
    return f"{value:.1f} {unit}/s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def _extra(extra: dict[str, Any]) -> str:
    keep = []
    for key, value in extra.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        keep.append(f"{key} {value}")
    return "; ".join(keep)


def markdown(report: dict[str, Any]) -> str:
    """A header naming mode, date and machine, then one row per figure."""
    m = report["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines = [
        f"Run: `{report['mode']}` mode, {report['started_at']}, {report['repeats']} repeats, {report['elapsed_s']:.0f} s in all.",
        f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores ({m['cores_logical']} logical), "
        f"{(m.get('memory_bytes') or 0) / 2**30:.0f} GiB, {m['platform']}, Python {m['python']}; "
        f"load average {', '.join(f'{x:.1f}' for x in (m.get('loadavg_start') or []))} at start "
        f"and {', '.join(f'{x:.1f}' for x in (m.get('loadavg_end') or []))} at the end (a shared machine).",
        f"Libraries: {libs}.",
        "",
        "| stage | figure | ketqua (median) | throughput/core | baseline (median) | baseline throughput/core | × baseline time | aim | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for st in report["stages"]:
        if not st["figures"]:
            lines.append(f"| {st['name']} | {st['status']}: {st.get('reason', '')} | | | | | | | |")
            continue
        for f in st["figures"]:
            if f["status"] != "ok":
                lines.append(f"| {st['name']} | {f['name']}: {f['status']} ({f.get('reason')}) | | | | | | | |")
                continue
            cand = f["candidate"]
            base = f["baseline"]
            ratio = f"{f['ratio']:.3g}×" if f.get("ratio") is not None else "–"
            lines.append(
                "| {stage} | {name} | {cm} | {ctp} | {bm} | {btp} | {ratio} | {aim} | {notes} |".format(
                    stage=st["name"],
                    name=f["name"],
                    cm=_seconds(cand["wall_s"]["median"]),
                    ctp=_rate(f.get("throughput_per_core_per_s"), f["unit"]),
                    bm=_seconds(base["wall_s"]["median"]) if base else "–",
                    btp=_rate(f.get("baseline_throughput_per_core_per_s"), f["unit"]) if base else "–",
                    ratio=ratio,
                    aim=f.get("aim") or "",
                    notes=_extra(f.get("extra") or {}).replace("|", "/"),
                )
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_OUT / "bench.json"
    print(markdown(json.loads(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
