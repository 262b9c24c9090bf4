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
import sys
sys.path.insert(0, "bench")
import django, random
django.setup()
from _judged_pairs import insert_judged_pairs
rng = random.Random(0)
vocab = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 9))) for _ in range(5000)]
def text(words):
    return ' '.join(rng.choice(vocab) for _ in range(words)) + '.'
insert_judged_pairs({n}, prompt_text=lambda i: text({prompt_words}), answer_text=lambda i, j: text({answer_words}))
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
