#!/usr/bin/env python
"""Prompt import speed: pairs/s and peak RSS of `manage.py import_prompts` at 20k pairs (and 1M with --big).

Each pair is one prompt (300–900 characters) with two completions (400–1,600 characters each), written as
JSONL, CSV and Parquet (the Parquet decoded-size limit is raised for the run). Every import runs in a child process against a fresh database: a temporary SQLite
file, and PostgreSQL too when DATABASE_URL names one (a throwaway database `bench_import_<pid>` is created
next to it and dropped afterwards). The child times the command alone and reports its own CPU time and peak
RSS, and on PostgreSQL the CPU time of the server process that served it (read from /proc: same machine).

    .venv/bin/python bench/import_speed.py [--sizes 20000] [--formats jsonl,csv,parquet] [--big] [--backends sqlite,postgres] [--compare DIR]
"""

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the model answer prompt reward policy token sample human feedback ranking preference question explain "
         "why how what which data train value loss gradient step batch review label quality safe helpful").split()


def _text(rng: random.Random, low: int, high: int) -> str:
    target, words = rng.randint(low, high), []
    size = 0
    while size < target:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words).capitalize() + "."


def _records(n: int, seed: int = 7):
    rng = random.Random(seed)
    for i in range(n):
        yield {"id": f"b-{i}", "prompt": f"#{i} " + _text(rng, 300, 900),
               "completions": [{"text": _text(rng, 400, 1600), "model": "policy-a"},
                               {"text": _text(rng, 400, 1600), "model": "policy-b"}]}


def write_file(path: Path, fmt: str, n: int) -> None:
    if fmt == "jsonl":
        with path.open("w") as fh:
            for record in _records(n):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "prompt", "completion_1", "model_1", "completion_2", "model_2"])
            for r in _records(n):
                c = r["completions"]
                writer.writerow([r["id"], r["prompt"], c[0]["text"], c[0]["model"], c[1]["text"], c[1]["model"]])
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = ["id", "prompt", "completion_1", "model_1", "completion_2", "model_2"]
        schema = pa.schema([(c, pa.string()) for c in columns])
        with pq.ParquetWriter(path, schema) as writer:
            batch: dict[str, list] = {c: [] for c in columns}
            for i, r in enumerate(_records(n), start=1):
                c = r["completions"]
                for key, value in zip(columns, [r["id"], r["prompt"], c[0]["text"], c[0]["model"], c[1]["text"],
                                                c[1]["model"]]):
                    batch[key].append(value)
                if i % 20_000 == 0 or i == n:
                    writer.write_table(pa.table(batch, schema=schema))
                    batch = {c: [] for c in columns}


CHILD = """
import json, os, resource, sys, time
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from feedback import services
from feedback.models import ComparisonTask, Completion, Prompt
project = services.create_project(slug="bench", overlap=1)

def server_cpu():
    # The PostgreSQL backend serving this connection runs on this machine: its CPU time from /proc.
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

server_started = server_cpu()
started, cpu_started = time.perf_counter(), time.process_time()
call_command("import_prompts", sys.argv[1], "--project", "bench", verbosity=0)
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
server_seconds = server_cpu() - server_started
counts = [Prompt.objects.count(), Completion.objects.count(), ComparisonTask.objects.count()]
print("RESULT", json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "server_cpu_seconds": server_seconds,
                            "counts": counts, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _pg_database(base_url: str, name: str, create: bool) -> str:
    import psycopg

    admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + "/" + name


def run_import(url: str, path: Path, code: Path = ROOT) -> dict:
    # A Parquet file's decoded size is capped at 200 MB by default (about 75k of these pairs): raised here.
    env = {"IMPORT_MAX_PARQUET_UNCOMPRESSED_BYTES": str(16 << 30), **os.environ, "DATABASE_URL": url,
           "DJANGO_SETTINGS_MODULE": "config.settings.base", "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=code, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=code, env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="20000")
    parser.add_argument("--big", action="store_true", help="also 1,000,000 pairs")
    parser.add_argument("--formats", default="jsonl,csv,parquet")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another checkout (e.g. `git archive` of the previous commit): each import runs there too, "
                             "interleaved, so a shared machine's load hits both alike")
    args = parser.parse_args()
    codes = [("this", ROOT)] + ([("compare", args.compare.resolve())] if args.compare else [])
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.big else [])
    backends = [b for b in args.backends.split(",") if b == "sqlite" or os.environ.get("DATABASE_URL", "").startswith("postgres")]
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        for size in sizes:
            for fmt in args.formats.split(","):
                path = work / f"pairs-{size}.{fmt}"
                write_file(path, fmt, size)
                for backend, (label, code) in [(b, c) for b in backends for c in codes]:
                    if backend == "sqlite":
                        url = f"sqlite:///{work / f'db-{size}-{fmt}.sqlite3'}"
                    else:
                        url = _pg_database(os.environ["DATABASE_URL"], f"bench_import_{os.getpid()}", create=True)
                    try:
                        result = run_import(url, path, code)
                    finally:
                        if backend == "sqlite":
                            Path(url[len("sqlite:///"):]).unlink(missing_ok=True)
                        else:
                            _pg_database(os.environ["DATABASE_URL"], f"bench_import_{os.getpid()}", create=False)
                    assert result["counts"] == [size, 2 * size, size], result
                    print(f"import_pairs_per_s {size / result['seconds']:.0f} pairs/s n={size} format={fmt} "
                          f"db={backend} code={label} seconds={result['seconds']:.1f} "
                          f"cpu_seconds={result['cpu_seconds']:.1f} server_cpu_seconds={result['server_cpu_seconds']:.1f} "
                          f"peak_rss={result['peak_kib'] / 1024:.0f}MiB",
                          flush=True)
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
