#!/usr/bin/env python
"""Task browser: p50/p95 of one list page (the selector the page calls: keyset ids + the rows' details) at
1M tasks, for the first page, deep keyset pages and each filter.

Builds a throwaway database (SQLite in a temp dir; also PostgreSQL when DATABASE_URL points at one: a
fresh database `bench_task_browser` on that server, dropped afterwards) with raw executemany inserts:
N prompts and tasks of two completions (ten models, one rare), clustered by age: the oldest 70% complete
with two judgements each (10% of them disputed, 2% flagged all bad, 0.5% unsafe), the newest open, a
cancelled batch of 2% in the middle, 1% gold tasks added last. Then the status and gold scenarios run
again without migration 0008's indexes.

    .venv/bin/python bench/task_browser.py [--tasks 1000000] [--repeat 20] [--keep]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 50_000


def build(n: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from feedback import services
    from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Prompt
    from feedback.services.prompts import _insert_many
    from tests.feedback.factories import UserFactory

    project = services.create_project(slug="bench", name="Bench", overlap=2)
    first, second = UserFactory(), UserFactory()
    services.add_member(project=project, username=first.username, role="annotator")
    services.add_member(project=project, username=second.username, role="annotator")
    now = connection.ops.adapt_datetimefield_value(timezone.now())

    def status(i):  # clustered by age, as in a real project: the oldest 70% complete, the newest open, a
        # cancelled batch of 2% in the middle, gold tasks (1%) added last
        if i >= n - n // 100:
            return "open", True
        if n // 2 <= i < n // 2 + n // 50:
            return "cancelled", False
        return ("complete" if i < n * 0.7 else "open"), False

    for start in range(0, n, CHUNK):
        rows = range(start, min(n, start + CHUNK))
        with transaction.atomic():
            _insert_many(Prompt, ["id", "project", "external_id", "text", "messages", "content_hash", "metadata",
                                  "created_at"],
                         [(i + 1, project.pk, f"p{i}", f"Question number {i}: what is {i % 977} plus {i % 13}?", None,
                           f"h{i}", {}, now) for i in rows])
            _insert_many(Completion, ["id", "prompt", "text", "model_name", "generation", "content_hash", "created_at"],
                         [(2 * i + 1 + j, i + 1, f"Answer {j} to {i}", "rare-model" if (i % 1000, j) == (5, 1)
                           else f"model-{(i + j) % 10}", {}, f"c{j}", now) for i in rows for j in range(2)])
            _insert_many(ComparisonTask, ["id", "project", "prompt", "status", "judgements_needed", "judgements_done",
                                          "slots_taken", "priority", "is_gold", "gold_ranking", "created_at"],
                         [(i + 1, project.pk, i + 1, status(i)[0], 2, 2 if status(i)[0] == "complete" else 0,
                           2 if status(i)[0] == "complete" else 0, 0, status(i)[1],
                           [[2 * i + 1], [2 * i + 2]] if status(i)[1] else None, now) for i in rows])
            _insert_many(ComparisonTask.completions.through, ["comparisontask", "completion"],
                         [(i + 1, 2 * i + 1 + j) for i in rows for j in range(2)])
            judged = [i for i in rows if status(i)[0] == "complete"]
            _insert_many(Assignment, ["id", "task", "annotator", "project", "state", "label_order", "leased_at",
                                      "leased_until", "finished_at"],
                         [(2 * i + 1 + k, i + 1, user.pk, project.pk, "submitted", [2 * i + 1, 2 * i + 2], now, now,
                           now) for i in judged for k, user in enumerate((first, second))])

            def ranking(i, k):
                better_first = not (k == 1 and i % 10 == 3)  # 10% disputed: the second judge disagrees
                return [[2 * i + 1], [2 * i + 2]] if better_first else [[2 * i + 2], [2 * i + 1]]

            def flags(i, k):
                return ["unsafe"] if (i % 200, k) == (7, 0) else ["all_bad"] if (i % 50, k) == (11, 1) else []

            _insert_many(Judgement, ["id", "task", "annotator", "assignment", "ranking", "ranking_labels", "flags",
                                     "confidence", "comment", "seconds_spent", "idempotency_key", "created_at"],
                         [(2 * i + 1 + k, i + 1, user.pk, 2 * i + 1 + k, ranking(i, k), [["a"], ["b"]], flags(i, k), 3,
                           "", 5.0, "", now) for i in judged for k, user in enumerate((first, second))])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def scenarios(n: int) -> list[tuple[str, dict, dict]]:
    """(name, filters, cursor)."""
    deep = {"after": int(n * 0.9)}
    return [
        ("first_page", {}, {}), ("deep_after", {}, deep), ("deep_before", {}, {"before": int(n * 0.5)}),
        ("status_open", {"status": "open"}, {}), ("status_open_deep", {"status": "open"}, deep),
        ("status_cancelled", {"status": "cancelled"}, {}), ("status_complete", {"status": "complete"}, deep),
        ("gold_yes", {"gold": "yes"}, {}), ("gold_yes_deep", {"gold": "yes"}, deep), ("gold_no", {"gold": "no"}, {}),
        ("agreement_low", {"agreement": "low"}, {}), ("agreement_high", {"agreement": "high"}, deep),
        ("flag_unsafe", {"flag": "unsafe"}, {}), ("flag_unsafe_deep", {"flag": "unsafe"}, deep),
        ("flag_any", {"flag": "any"}, {}),
        ("model_common", {"model": "model-3"}, {}), ("model_rare", {"model": "rare-model"}, {}),
        ("model_rare_deep", {"model": "rare-model"}, deep),
        ("q_common", {"q": "plus 5?"}, {}), ("q_rare", {"q": f"number {n - 7}:"}, {}),
        ("q_absent", {"q": "no such words"}, {}),
        ("combined", {"status": "complete", "flag": "any", "model": "model-3"}, {}),
    ]


def measure(n: int, repeat: int, label: str, only: tuple = ()) -> None:
    from feedback.models import Project
    from feedback.selectors import TaskFilters, task_page

    project = Project.objects.get(slug="bench")
    for name, filters, cursor in scenarios(n):
        if only and not name.startswith(only):
            continue
        times, rows = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            page = task_page(project=project, filters=TaskFilters(**filters), **cursor)
            times.append((time.perf_counter() - started) * 1000)
            rows = len(page.rows)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        print(f"task_browser_{name} p50={statistics.median(times):.1f} ms p95={p95:.1f} ms rows={rows} "
              f"n_tasks={n} repeat={repeat} {label}", flush=True)


def child(n: int, repeat: int, label: str) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    build(n)
    print(f"setup_tasks_inserted {time.perf_counter() - started:.0f} s n_tasks={n} {label}", flush=True)
    measure(n, repeat, label)
    # What migration 0008's indexes buy: the status and gold filters again without them.
    from django.db import connection

    with connection.cursor() as cursor:
        for index in ("task_browse_status", "task_browse_gold"):
            cursor.execute(f"DROP INDEX {index}")
        cursor.execute("ANALYZE")
    measure(n, repeat, f"{label} without-0008-indexes", only=("status", "gold"))


def run(url: str, n: int, repeat: int, label: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.base",
           "PYTHONPATH": str(ROOT), "DEBUG": "0"}
    subprocess.run([sys.executable, __file__, "--child", "--tasks", str(n), "--repeat", str(repeat), "--label", label],
                   cwd=ROOT, env=env, check=True)


def postgres(url: str, n: int, repeat: int, keep: bool) -> None:
    import psycopg

    base, _, _ = url.rpartition("/")
    name = "bench_task_browser"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        run(f"{base}/{name}", n, repeat, "postgresql")
    finally:
        if not keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.tasks, args.repeat, args.label)
    url = os.environ.get("DATABASE_URL", "")
    if not args.skip_sqlite:
        work = Path(tempfile.mkdtemp(prefix="bench-task-browser-"))
        try:
            run(f"sqlite:///{work / 'db.sqlite3'}", args.tasks, args.repeat, "sqlite-wal")
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    if url.startswith("postgres"):
        postgres(url, args.tasks, args.repeat, args.keep)


if __name__ == "__main__":
    main()
