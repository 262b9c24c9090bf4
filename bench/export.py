#!/usr/bin/env python
"""Preference export: rows/s and peak memory for 10k and 1M pairs (memory should barely grow).

Builds a throwaway SQLite database per size (tasks of two completions, one judgement each, inserted
with executemany), then runs `manage.py export_preferences` in a child process and reads its peak RSS.

    .venv/bin/python bench/export.py [--sizes 10000,1000000] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_database(url: str, pairs: int) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    code = f"""
import sys
sys.path.insert(0, "bench")
import django
django.setup()
from _judged_pairs import insert_judged_pairs
insert_judged_pairs({pairs}, prompt_text=lambda i: f"Question number {{i}}?",
                    answer_text=lambda i, j: f"Answer {{j}} to question {{i}}, " + "words " * (5 + j * 7))
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, check=True)


def export(url: str, out: Path) -> tuple[float, float]:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    # The child reports its own peak RSS (RUSAGE_SELF), so the database build does not count.
    code = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['manage.py', 'export_preferences', '--project', 'bench', '--out', {str(out)!r}, '-v0']\n"
        "try:\n    runpy.run_path('manage.py', run_name='__main__')\n"
        "finally:\n    print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kib = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("PEAK_KIB")))
    return seconds, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            url = f"sqlite:///{work / f'db-{size}.sqlite3'}"
            started = time.perf_counter()
            build_database(url, size)
            print(f"setup_pairs_inserted {time.perf_counter() - started:.1f} s n={size} sqlite-wal", flush=True)
            seconds, peak_mib = export(url, work / f"out-{size}")
            lines = sum(1 for f in ("train.jsonl", "test.jsonl") for _ in open(work / f"out-{size}" / f))
            print(f"export_rows_per_s {lines / seconds:.0f} rows/s n={lines} format=jsonl sqlite-wal", flush=True)
            print(f"export_peak_rss {peak_mib:.0f} MiB n={lines} format=jsonl (child process, includes Django start-up)", flush=True)
            print(f"export_card_present {int((work / f'out-{size}' / 'README.md').exists())} bool n={lines}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(json.dumps({"kept": str(work)}))


if __name__ == "__main__":
    main()
