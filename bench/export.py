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
import django, datetime
django.setup()
from django.db import connection, transaction
from django.utils import timezone
from feedback import services
from feedback.services.prompts import _insert_many
from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Prompt
from tests.feedback.factories import UserFactory
project = services.create_project(slug="bench", overlap=1)
user = UserFactory()
now = connection.ops.adapt_datetimefield_value(timezone.now())
n = {pairs}
with transaction.atomic():
    _insert_many(Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
        [(project.pk, f"p{{i}}", f"Question number {{i}}?", None, f"h{{i}}", {{}}, now) for i in range(n)])
    first_prompt = Prompt.objects.order_by("id").values_list("id", flat=True).first()
    _insert_many(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"],
        [(first_prompt + i, f"Answer {{j}} to question {{i}}, " + "words " * (5 + j * 7), f"model-{{j}}", {{}}, f"c{{i}}-{{j}}", now)
         for i in range(n) for j in range(2)])
    _insert_many(ComparisonTask, ["project", "prompt", "status", "judgements_needed", "judgements_done", "slots_taken",
        "priority", "is_gold", "created_at"], [(project.pk, first_prompt + i, "complete", 1, 1, 1, 0, False, now) for i in range(n)])
    first_task = ComparisonTask.objects.order_by("id").values_list("id", flat=True).first()
    first_completion = Completion.objects.order_by("id").values_list("id", flat=True).first()
    _insert_many(ComparisonTask.completions.through, ["comparisontask", "completion"],
        [(first_task + i, first_completion + 2 * i + j) for i in range(n) for j in range(2)])
    _insert_many(Assignment, ["task", "annotator", "project", "state", "label_order", "leased_at", "leased_until", "finished_at"],
        [(first_task + i, user.pk, project.pk, "submitted", [first_completion + 2 * i, first_completion + 2 * i + 1], now, now, now) for i in range(n)])
    first_assignment = Assignment.objects.order_by("id").values_list("id", flat=True).first()
    _insert_many(Judgement, ["task", "annotator", "assignment", "ranking", "ranking_labels", "flags", "confidence",
        "comment", "seconds_spent", "idempotency_key", "created_at"],
        [(first_task + i, user.pk, first_assignment + i, [[first_completion + 2 * i + (i % 2)], [first_completion + 2 * i + 1 - (i % 2)]],
          [["a"], ["b"]], [], 3, "", 5.0, "", now) for i in range(n)])
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
