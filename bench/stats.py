#!/usr/bin/env python
"""Every decision rule's error rate, by seeded simulation through the product's own functions.

    .venv/bin/python bench/stats.py [--quick] [--only promotion|gates|agreement]

Each section lives beside this script (`stats_promotion.py`, `stats_gates.py`, `stats_agreement.py`) and returns
its lines; this script prints them in order with the time each took. `--quick` runs fewer simulated runs (wider
Monte-Carlo error, about a minute in all); the README and docs/statistics.md quote the full run. A benchmark, not
a test: the tests assert the same rates at a size where the old rules fail clearly.
"""

from __future__ import annotations

import argparse
import importlib
import time

import _env  # noqa: F401  (project root on sys.path)

SECTIONS = ("promotion", "gates", "agreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer simulated runs")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        started = time.perf_counter()
        module = importlib.import_module(f"stats_{name}")
        print(f"## {name}", flush=True)
        for line in module.report(quick=args.quick):
            print(line, flush=True)
        print(f"# {name}: {time.perf_counter() - started:.0f} s\n", flush=True)


if __name__ == "__main__":
    main()
