#!/usr/bin/env python
"""Queries and server CPU per request on the annotate path (next-task, judgements), in-process.

    .venv/bin/python bench/profile_annotate.py [--n 300] [--tasks 2000] [--cprofile next_task|submit]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hotpath_profile .venv/bin/python bench/profile_annotate.py

Every request goes through Django's full WSGI handler and middleware (django.test.Client, token auth,
production settings with the throttles lifted), so the figures are what a gunicorn worker spends per
request minus the HTTP parsing. Prints, per endpoint:

    next_task_queries 7 queries n=300 sqlite-wal
    next_task_cpu 3.1 ms n=300 sqlite-wal        (time.process_time per request: this process's CPU)

With --cprofile ENDPOINT it prints the top functions by cumulative time for that endpoint. The SQLite
database is a throw-away file; on PostgreSQL the named database is created if missing and a fresh project
is added to it on each run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure(database_url: str | None) -> str:
    if not database_url:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='profile-annotate-')}/db.sqlite3"
    elif database_url.startswith("postgres"):
        ensure_pg_database(database_url)
    os.environ.update(
        DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="config.settings.base", DEBUG="0",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40, ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        THROTTLE_USER="100000000/min", THROTTLE_SUBMIT="100000000/min", LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from django.conf import settings

    # Pages name static files; without `collectstatic` the manifest storage has no manifest to read.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    return "postgresql" if database_url.startswith("postgres") else "sqlite-wal"


def ensure_pg_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def populate(n_tasks: int):
    from feedback import importing, services

    slug = f"profile-{uuid.uuid4().hex[:8]}"
    project = services.create_project(slug=slug, name="Profile", completions_per_task=3, overlap=2, lease_seconds=600)
    rows = [importing.clean_row({
        "id": f"p-{i}", "prompt": f"Profile prompt {i}?",
        "completions": [{"text": f"Answer {j} to {i}. " + "lorem ipsum " * 20, "model": f"m-{j}"} for j in range(3)],
    }, i + 1) for i in range(n_tasks)]
    services.import_prompts(project=project, rows=rows)
    _, token = services.add_member(project=project, username=f"{slug}-annotator", role="annotator")
    return project, token.key


class Meter:
    """Per-endpoint CPU (process_time), wall time and query counts."""

    def __init__(self, capture: bool):
        self.capture = capture  # capturing SQL costs CPU itself: count queries and time CPU in separate passes
        self.cpu, self.wall, self.queries = {}, {}, {}

    def run(self, name, fn, profiler=None):
        from contextlib import nullcontext

        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) if self.capture else nullcontext() as ctx:
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            response = fn()
            if profiler:
                profiler.disable()
            c1, w1 = time.process_time(), time.perf_counter()
        self.cpu.setdefault(name, []).append((c1 - c0) * 1000)
        self.wall.setdefault(name, []).append((w1 - w0) * 1000)
        captured = ctx.captured_queries if self.capture else []
        self.queries.setdefault(name, []).append(len(captured))
        return response, captured


def loop(client, slug: str, n: int, meter: Meter, profile: str | None, show_sql: bool, page_client=None):
    profilers = {name: cProfile.Profile() if profile == name else None for name in ("next_task", "submit")}
    for i in range(n):
        r, sql = meter.run("next_task", lambda: client.post(f"/api/v1/projects/{slug}/next-task/"),
                           profilers["next_task"])
        assert r.status_code == 200, (r.status_code, r.content[:300])
        body = r.json()
        if show_sql and i == n - 1:
            print("# next-task SQL:\n" + "\n".join("#   " + q["sql"][:220] for q in sql), file=sys.stderr)
        labels = [c["label"] for c in body["completions"]]
        random.shuffle(labels)
        r, sql = meter.run("submit", lambda: client.post(
            f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": [[x] for x in labels], "confidence": 3},
            content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex), profilers["submit"])
        assert r.status_code == 201, (r.status_code, r.content[:300])
        if show_sql and i == n - 1:
            print("# submit SQL:\n" + "\n".join("#   " + q["sql"][:220] for q in sql), file=sys.stderr)
    if page_client is not None:  # the annotate page: leases (or shows the held task), then judged via the API
        for _ in range(n):
            r, sql = meter.run("annotate_page", lambda: page_client.get(f"/p/{slug}/annotate/"))
            assert r.status_code == 200, r.status_code
            body = client.post(f"/api/v1/projects/{slug}/next-task/").json()
            client.post(f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": [[c["label"]] for c in body["completions"]]},
                        content_type="application/json")
        if show_sql:
            print("# annotate page SQL:\n" + "\n".join("#   " + q["sql"][:220] for q in sql), file=sys.stderr)
    for name, prof in profilers.items():
        if prof:
            print(f"# cProfile {name}, {n} requests, top by cumulative time", file=sys.stderr)
            pstats.Stats(prof, stream=sys.stderr).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="request pairs measured (after --warmup)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--cprofile", choices=["next_task", "submit"])
    parser.add_argument("--sql", action="store_true", help="print the SQL of the last request of each kind")
    args = parser.parse_args()

    label = configure(args.database_url)
    from django.contrib.auth import get_user_model
    from django.test import Client

    User = get_user_model()

    project, token = populate(max(args.tasks, 2 * (args.n + args.warmup) + 10))
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    page_client = Client()
    page_client.force_login(User.objects.get(auth_token__key=token))
    counter = Meter(capture=True)
    loop(client, project.slug, args.warmup, counter, None, args.sql, page_client)
    meter = Meter(capture=False)
    loop(client, project.slug, args.n, meter, args.cprofile, False, page_client)
    for name in ("next_task", "submit", "annotate_page"):
        print(f"{name}_queries {max(counter.queries[name]):g} queries n={args.warmup} {label} (max)")
        print(f"{name}_cpu {statistics.median(meter.cpu[name]):.2f} ms n={args.n} {label} (median; "
              f"mean {statistics.mean(meter.cpu[name]):.2f})")
        print(f"{name}_wall {statistics.median(meter.wall[name]):.2f} ms n={args.n} {label} (median)")


if __name__ == "__main__":
    main()
