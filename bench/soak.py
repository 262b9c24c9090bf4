#!/usr/bin/env python
"""Soak: 64 simulated annotators for a bounded time against gunicorn + PostgreSQL, with a job worker
training a reward model in the background; then an audit that every judgement answered 201 was stored
exactly once.

    .venv/bin/python bench/soak.py [--clients 64] [--duration 60] [--pg postgres://postgres@127.0.0.1:5432/postgres]

Creates a fresh database `soak_<pid>` and drops it at the end. Prints `name value unit n=… settings`.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import annotation_load as load  # noqa: E402  (the HTTP client loop, gunicorn wrapper and figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/postgres", help="server to create the database on")
    parser.add_argument("--no-training", action="store_true", help="no db_worker training in the background")
    args = parser.parse_args()

    import psycopg

    name = f"soak_{os.getpid()}"
    admin_url = args.pg.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    env = load.bench_env(workdir / "unused.sqlite3")
    env.update(DATABASE_URL=database_url, MODEL_DIR=os.environ.get("MODEL_DIR", str(load.ROOT / "models")),
               EXPORT_DIR=str(workdir / "exports"))
    os.environ.update(env)
    label = f"postgresql clients={args.clients} gunicorn_workers={args.workers}"
    gunicorn = worker = None
    try:
        load.setup_django()
        from django.db import connections

        from feedback import services
        from feedback.models import Judgement
        from training import services as training_services

        project = services.create_project(slug="soak", name="Soak", completions_per_task=3, overlap=3)
        services.import_prompts(project=project, rows=load.prompt_rows(args.tasks))
        tokens = [services.add_member(project=project, username=f"soak-{i}", role="annotator")[1].key
                  for i in range(args.clients)]
        if not args.no_training:
            # A reward model on the judgements as they arrive: the worker trains while annotators work.
            training_services.start_training(project=project, kind="reward", config={"max_steps": 20, "max_length": 128})
        connections.close_all()

        gunicorn = load.Gunicorn(env, workers=args.workers, threads=2, log_path=workdir / "gunicorn.log")
        gunicorn.wait_ready(tokens[0])
        if not args.no_training:
            worker = subprocess.Popen([sys.executable, "manage.py", "db_worker", "--queue-name", "*", "--interval", "1"],
                                      cwd=load.ROOT, env=env, stdout=open(workdir / "worker.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        stats, seconds = load.run_load(gunicorn.url, tokens, "soak", args.duration)

        requests_total = sum(len(v) for v in stats.latency.values())
        created = stats.status["submit"][201]
        load.figure("soak_requests_per_s", requests_total / seconds, "req/s", requests_total, label)
        load.figure("soak_judgements_per_s", created / seconds, "judgements/s", created, label)
        for endpoint in ("next_task", "submit"):
            load.figure(f"soak_{endpoint}_p50", load.pct(stats.latency[endpoint], 50), "ms", len(stats.latency[endpoint]), label)
            load.figure(f"soak_{endpoint}_p99", load.pct(stats.latency[endpoint], 99), "ms", len(stats.latency[endpoint]), label)
        errors = sum(n for endpoint in stats.status.values() for code, n in endpoint.items()
                     if not (isinstance(code, int) and code in (200, 201, 204)))
        load.figure("soak_errors", errors, "responses", requests_total, label)
        stored = Judgement.objects.filter(task__project=project).count()
        distinct = Judgement.objects.filter(task__project=project).values("task", "annotator").distinct().count()
        load.figure("soak_audit_stored_minus_201s", stored - created, "judgements", created, label)
        load.figure("soak_audit_duplicates", stored - distinct, "judgements", stored, label)
        from training.models import TrainingRun

        for run in TrainingRun.objects.filter(project=project):
            print(f"# background run {run.pk} {run.kind}: {run.state} {run.error[-200:]}", file=sys.stderr)
        for error in stats.errors:
            print(f"# error: {error}", file=sys.stderr)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        if gunicorn is not None:
            gunicorn.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not have started
            pass
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
