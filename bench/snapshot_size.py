#!/usr/bin/env python
"""Stored snapshot rows: bytes (JSONL and gzip-compressed, as `SnapshotRowChunk` keeps them) and the time the
snapshot's transaction takes (it holds the project lock, and on SQLite the database's write lock, meanwhile).

Builds a throwaway SQLite database per size (tasks of two completions, one judgement each, so one row per
judgement; prompts and answers of random words from a 5,000-word vocabulary, which compresses about as prose
does), then times `services.create_snapshot` in a child process.

    .venv/bin/python bench/snapshot_size.py [--sizes 10000,100000] [--prompt-words 30] [--answer-words 150]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import django, random
django.setup()
from django.db import connection, transaction
from django.utils import timezone
from feedback import services
from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Prompt
from feedback.services.prompts import _insert_many
from tests.feedback.factories import UserFactory
rng = random.Random(0)
vocab = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))) for _ in range(5000)]
def text(words):
    return ' '.join(rng.choice(vocab) for _ in range(words)) + '.'
project = services.create_project(slug="bench", overlap=1)
user = UserFactory()
now = connection.ops.adapt_datetimefield_value(timezone.now())
n, prompt_words, answer_words = {n}, {prompt_words}, {answer_words}
with transaction.atomic():
    _insert_many(Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
        [(project.pk, f"p{{i}}", text(prompt_words), None, f"h{{i}}", {{}}, now) for i in range(n)])
    first_prompt = Prompt.objects.order_by("id").values_list("id", flat=True).first()
    _insert_many(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"],
        [(first_prompt + i, text(answer_words), f"model-{{j}}", {{}}, f"c{{i}}-{{j}}", now) for i in range(n) for j in range(2)])
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


MEASURE = """
import django, json, time
django.setup()
from django.db.models import Sum
from django.db.models.functions import Length
from feedback import services
from feedback.models import Project, SnapshotRowChunk
from feedback.services import snapshots
project = Project.objects.get(slug="bench")
started = time.perf_counter()
snapshot = services.create_snapshot(project=project)
made = time.perf_counter() - started
chunks = SnapshotRowChunk.objects.filter(snapshot=snapshot)
stored = chunks.aggregate(n=Sum(Length("jsonl_gz")))["n"] or 0
started = time.perf_counter()
raw = sum(len(line) for line in snapshots.stored_lines(snapshot, verify=True))
read = time.perf_counter() - started
print(json.dumps({"judgements": snapshot.counts["judgements"], "rows": snapshot.counts["rows"], "jsonl_bytes": raw,
                  "stored_bytes": stored, "chunks": chunks.count(), "create_s": round(made, 2),
                  "read_s": round(read, 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--prompt-words", type=int, default=30)
    parser.add_argument("--answer-words", type=int, default=150)
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as work:
            url = f"sqlite:///{Path(work) / 'bench.sqlite3'}"
            env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.base",
                   "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            build = BUILD.format(n=n, prompt_words=args.prompt_words, answer_words=args.answer_words)
            subprocess.run([sys.executable, "-c", build], cwd=ROOT, env=env, check=True)
            out = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            figures = json.loads(out)
            figures["ratio"] = round(figures["jsonl_bytes"] / max(figures["stored_bytes"], 1), 1)
            figures["stored_bytes_per_row"] = round(figures["stored_bytes"] / max(figures["rows"], 1), 1)
            print(json.dumps(figures))


if __name__ == "__main__":
    main()
