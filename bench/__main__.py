"""``python -m bench``: the maintainers' benchmark suite (see bench/README.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.runner import add_arguments, run_from_args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags shared with ``ketqua bench`` and run the suite."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="ketqua benchmarks: each stage next to its baseline, measured in the same run.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
