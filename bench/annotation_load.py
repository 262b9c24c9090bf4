#!/usr/bin/env python
"""Annotation load: HTTP throughput under gunicorn, and next-task latency as the queue grows.

    .venv/bin/python bench/annotation_load.py [--quick]

Prints one line per figure, `name value unit n=… settings`, e.g.

    next_task_p50 1.9 ms n=1000 tasks=1000000 sqlite-wal

Two parts, each in its own process with its own throw-away SQLite database (WAL, IMMEDIATE
transactions: the embedded default of config/settings/base.py) under a temp directory:

1. http  — a project with --tasks tasks (imported through feedback.services.import_prompts), one
   annotator with an API token per client; gunicorn (config/gunicorn.py) with 2 and 4 workers; 1, 4
   and 16 client threads, each looping `POST next-task` + `POST judgements` (a full ranking, an
   Idempotency-Key) for --duration seconds. Afterwards the database is checked: every 201 is
   exactly one stored judgement, no task over-judged.
2. scale — next_task() called in-process (service level) with 10k and then 1M tasks in the project
   (--quick: 10k and 100k; tasks bulk-inserted with raw SQL); each pick is followed by a submit so it
   always has to find a fresh task. The ratio of the medians should stay near 1: picking walks the
   partial index of open tasks (SQLite's plan for each query is printed to stderr). Also at each
   size: next_task() with gold tasks mixed in (--gold-rate), selectors.annotator_progress() (run by
   every annotate page), and next_task() for an annotator who has judged many tasks that are still
   open (overlap 2), which the pick has to step over.

This is a benchmark, not a test: it asserts nothing, it prints figures. The clients run in this
machine's Python too, so on a small machine they compete with gunicorn for the CPU.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
DB_LABEL = "sqlite-wal"


# --- common -------------------------------------------------------------------------------------


def bench_env(db_path: Path) -> dict:
    """The environment of every part and of gunicorn: a private database, production-like settings."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        DJANGO_SETTINGS_MODULE="config.settings.base",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # The API's per-user throttles (600 submits/min) would turn the benchmark into a throttle
        # test; lift them so the figures show what the server can do.
        THROTTLE_USER="100000000/min",
        THROTTLE_SUBMIT="100000000/min",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def figure(name: str, value: float, unit: str, n: int, settings: str) -> None:
    if isinstance(value, float):
        value = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    print(f"{name} {value} {unit} n={n} {settings}", flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values, in the values' unit."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def prompt_rows(n: int, start: int = 0, k: int = 3):
    from feedback import importing

    return [
        importing.clean_row({
            "id": f"bench-{i}", "prompt": f"Benchmark prompt {i}: explain item {i} briefly.",
            "completions": [{"text": f"Answer {j} to prompt {i}. " + "lorem ipsum " * 20, "model": f"bench-model-{j}"}
                            for j in range(k)],
        }, i + 1)
        for i in range(start, start + n)
    ]


# --- part 1: HTTP load under gunicorn -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self, env: dict, workers: int, threads: int, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(env, GUNICORN_WORKERS=str(workers), GUNICORN_THREADS=str(threads),
                   # No access log, gunicorn's own default: even into /dev/null each line is formatted (~7% of
                   # a worker's py-spy samples here). config/gunicorn.py reads an empty value as none.
                   GUNICORN_ACCESSLOG="")
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [GUNICORN, "config.wsgi:application", "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, token: str, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                r = requests.get(f"{self.url}/api/v1/projects/", headers={"Authorization": f"Token {token}"}, timeout=5)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: gunicorn's own process group only
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"next_task": [], "submit": []}
        self.status: dict[str, Counter] = {"next_task": Counter(), "submit": Counter()}
        self.errors: list[str] = []
        self.empty = 0  # next-task answered 204: nothing left for that annotator

    def record(self, endpoint: str, seconds: float, status) -> None:
        with self.lock:
            self.latency[endpoint].append(seconds * 1000)
            self.status[endpoint][status] += 1

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 5:
                self.errors.append(text)


def client_loop(base: str, token: str, slug: str, stop_at: float, stats: Stats) -> None:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    next_url = f"{base}/api/v1/projects/{slug}/next-task/"
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            r = session.post(next_url, timeout=60)
        except requests.RequestException as exc:
            stats.record("next_task", time.perf_counter() - t0, type(exc).__name__)
            stats.error(f"next-task: {exc!r}")
            continue
        stats.record("next_task", time.perf_counter() - t0, r.status_code)
        if r.status_code == 204:
            with stats.lock:
                stats.empty += 1
            return
        if r.status_code != 200:
            stats.error(f"next-task {r.status_code}: {r.text[:500]}")
            time.sleep(0.05)
            continue
        body = r.json()
        labels = [c["label"] for c in body["completions"]]
        random.shuffle(labels)
        ranking = [[labels[0], labels[1]], *[[x] for x in labels[2:]]] if random.random() < 0.2 else [[x] for x in labels]
        t0 = time.perf_counter()
        try:
            r = session.post(f"{base}/api/v1/tasks/{body['task']}/judgements/",
                             json={"ranking": ranking, "flags": [], "confidence": random.randint(1, 5)},
                             headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=60)
        except requests.RequestException as exc:
            stats.record("submit", time.perf_counter() - t0, type(exc).__name__)
            stats.error(f"submit: {exc!r}")
            continue
        stats.record("submit", time.perf_counter() - t0, r.status_code)
        if r.status_code != 201:
            stats.error(f"submit {r.status_code}: {r.text[:500]}")


def run_load(base: str, tokens: list[str], slug: str, duration: float) -> tuple[Stats, float]:
    stats = Stats()
    start = time.perf_counter()
    stop_at = start + duration
    threads = [threading.Thread(target=client_loop, args=(base, t, slug, stop_at, stats), daemon=True) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, time.perf_counter() - start


def part_http(args) -> None:
    setup_django()
    from django.db import connection, connections

    from feedback import services
    from feedback.models import ComparisonTask, Judgement

    t0 = time.perf_counter()
    project = services.create_project(slug="bench-http", name="Bench HTTP", completions_per_task=3,
                                      overlap=args.overlap, lease_seconds=600)
    result = services.import_prompts(project=project, rows=prompt_rows(args.tasks))
    figure("setup_import_prompts", time.perf_counter() - t0, "s", result.tasks_created,
           f"completions=3 via=services.import_prompts {DB_LABEL}")
    max_clients = max(args.clients)
    tokens = [services.add_member(project=project, username=f"bench-annotator-{i}", role="annotator")[1].key
              for i in range(max_clients)]
    connections.close_all()

    log_path = Path(args.workdir) / "gunicorn.log"
    env = bench_env(Path(connection.settings_dict["NAME"]))
    created_total = 0
    for workers in args.workers:
        server = Gunicorn(env, workers=workers, threads=args.threads, log_path=log_path)
        try:
            server.wait_ready(tokens[0])
            for clients in args.clients:
                stats, elapsed = run_load(server.url, tokens[:clients], project.slug, args.duration)
                settings = (f"clients={clients} workers={workers} threads={args.threads} tasks={args.tasks} "
                            f"overlap={args.overlap} duration={args.duration:g}s {DB_LABEL}")
                n_requests = sum(len(v) for v in stats.latency.values())
                created = stats.status["submit"][201]
                created_total += created
                errors = sum(n for ep, c in stats.status.items() for code, n in c.items()
                             if not (code == 200 and ep == "next_task") and not (code == 204 and ep == "next_task")
                             and not (code == 201 and ep == "submit"))
                figure("http_requests_per_s", n_requests / elapsed, "req/s", n_requests, settings)
                figure("http_judgements_per_s", created / elapsed, "judgements/s", created, settings)
                for endpoint in ("next_task", "submit"):
                    lat = stats.latency[endpoint]
                    figure(f"http_{endpoint}_p50", pct(lat, 50), "ms", len(lat), settings)
                    figure(f"http_{endpoint}_p99", pct(lat, 99), "ms", len(lat), settings)
                figure("http_errors", errors, "requests", n_requests, settings)
                if errors or stats.errors:
                    note(f"status codes: { {ep: dict(c) for ep, c in stats.status.items()} }")
                    for e in stats.errors:
                        note(f"error: {e}")
                if stats.empty:
                    note(f"{stats.empty} clients ran out of tasks (raise --tasks)")
        finally:
            server.stop()

    # Integrity: each 201 is one stored judgement; no task judged beyond its need.
    stored = Judgement.objects.filter(task__project=project).count()
    over = ComparisonTask.objects.filter(project=project, judgements_done__gt=project.overlap).count()
    figure("http_judgements_stored_minus_201s", stored - created_total, "judgements", stored,
           f"over_judged_tasks={over} {DB_LABEL}")
    log = log_path.read_text(errors="replace")
    problems = [line for line in log.splitlines() if "Traceback" in line or "locked" in line or " ERROR " in line]
    figure("gunicorn_log_errors", len(problems), "lines", len(log.splitlines()), DB_LABEL)
    if problems:
        note(f"gunicorn log {log_path} has errors; first lines follow")
        start = log.find("Traceback")
        note(log[max(0, start - 300): start + 4000] if start >= 0 else "\n".join(problems[:20]))
        if not args.keep:  # the temp directory goes away; keep the evidence
            kept = Path(tempfile.gettempdir()) / f"annotation-load-gunicorn-{os.getpid()}.log"
            shutil.copy(log_path, kept)
            note(f"copied to {kept}")


# --- part 2: next_task latency as the project grows -------------------------------------------------


def grow_tasks(project, total: int, k: int = 3, batch: int = 100_000) -> float:
    """Bulk-insert prompts, completions, tasks and links with INSERT … SELECT (SQLite, raw SQL) until the
    project holds `total` tasks. Much faster than the ORM; rows look like import_prompts' rows."""
    from django.db import connection, transaction

    from feedback.models import ComparisonTask, Completion, Prompt

    task_table, prompt_table = ComparisonTask._meta.db_table, Prompt._meta.db_table
    completion_table, link_table = Completion._meta.db_table, ComparisonTask.completions.through._meta.db_table
    have = ComparisonTask.objects.filter(project=project).count()
    now = "2026-01-01 00:00:00"
    t0 = time.perf_counter()
    while have < total:
        n = min(batch, total - have)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {prompt_table}")
            p0 = cur.fetchone()[0]
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {completion_table}")
            c0 = cur.fetchone()[0]
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {task_table}")
            t_0 = cur.fetchone()[0]
            seq = "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < %s) "
            # x = 1..n; prompt p0+x has completions c0+(x-1)*k+j+1 and task t_0+x.
            cur.execute(
                seq + f"INSERT INTO {prompt_table} (id, external_id, text, messages, content_hash, metadata, "
                "created_at, project_id) SELECT %s + x, 'bulk-' || (%s + x), 'Bulk prompt ' || (%s + x) || '?', NULL, "
                "printf('%%064x', %s + x), '{}', %s, %s FROM seq",
                [n, p0, p0, p0, p0, now, project.pk],
            )
            for j in range(k):
                cur.execute(
                    seq + f"INSERT INTO {completion_table} (id, text, model_name, generation, content_hash, "
                    "created_at, model_version_id, prompt_id) SELECT %s + (x - 1) * %s + %s + 1, "
                    "'Answer ' || %s || ' to bulk prompt ' || (%s + x), 'bench-model-' || %s, '{}', "
                    "printf('%%064x', %s), %s, NULL, %s + x FROM seq",
                    [n, c0, k, j, j, p0, j, j, now, p0],
                )
            cur.execute(
                seq + f"INSERT INTO {task_table} (id, status, judgements_needed, judgements_done, slots_taken, "
                "priority, is_gold, gold_ranking, created_at, project_id, prompt_id) "
                "SELECT %s + x, 'open', %s, 0, 0, 0, 0, NULL, %s, %s, %s + x FROM seq",
                [n, t_0, project.overlap, now, project.pk, p0],
            )
            for j in range(k):
                cur.execute(
                    seq + f"INSERT INTO {link_table} (comparisontask_id, completion_id) "
                    "SELECT %s + x, %s + (x - 1) * %s + %s + 1 FROM seq",
                    [n, t_0, c0, k, j],
                )
        have += n
    return time.perf_counter() - t0


def time_picks(project, annotator, reps: int, warmup: int = 30) -> tuple[list[float], list[float]]:
    """Pick (timed) then submit (timed separately), reps times: every pick must find a fresh task."""
    from feedback import services

    picks, submits = [], []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        assignment = services.next_task(project=project, annotator=annotator)
        t1 = time.perf_counter()
        if assignment is None:
            raise RuntimeError("ran out of tasks; raise the sizes")
        labels = sorted(assignment.label_map())
        services.submit_judgement(task=assignment.task, annotator=annotator, ranking=[[x] for x in labels],
                                  confidence=3, idempotency_key=uuid.uuid4().hex)
        t2 = time.perf_counter()
        if i >= warmup:
            picks.append((t1 - t0) * 1000)
            submits.append((t2 - t1) * 1000)
    return picks, submits


def explain_next_task(project, annotator) -> list[str]:
    """SQLite's plans for the SELECTs of one real next_task() call, with its real bound parameters
    (plans differ between literals and parameters, so the statements are captured, not rebuilt)."""
    from django.db import connection, transaction

    from feedback import services

    captured = []

    def capture(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and 'FROM "feedback_comparisontask" ' in sql:
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with transaction.atomic():
        with connection.execute_wrapper(capture):
            services.next_task(project=project, annotator=annotator)
        plans = []
        with connection.cursor() as cur:
            for sql, params in captured:
                cur.execute("EXPLAIN QUERY PLAN " + sql, params)
                plans.append(" | ".join(row[-1] for row in cur.fetchall()))
        transaction.set_rollback(True)  # leave the queue as it was
    return plans


def mark_gold(project, n: int) -> None:
    """Turn the n newest open tasks into gold tasks (as an admin marking a few later would)."""
    from feedback.models import ComparisonTask

    ids = list(ComparisonTask.objects.filter(project=project, status="open", is_gold=False)
               .order_by("-id").values_list("id", flat=True)[:n])
    ComparisonTask.objects.filter(pk__in=ids).update(is_gold=True, gold_ranking=[[0], [1], [2]])


def part_scale(args) -> None:
    setup_django()
    from django.db import connection, transaction

    from feedback import selectors, services
    from feedback.models import Assignment, ComparisonTask, Project

    project = services.create_project(slug="bench-scale", name="Bench scale", completions_per_task=3, overlap=1)
    annotator = services.add_member(project=project, username="bench-scale-annotator", role="annotator")[0].user
    medians, gold_means, progress_medians = {}, {}, {}
    for size in args.sizes:
        seconds = grow_tasks(project, size)
        figure("setup_bulk_insert_tasks", seconds, "s", size, f"completions=3 via=raw-sql {DB_LABEL}")
        settings = f"tasks={size} overlap=1 {DB_LABEL}"
        picks, submits = time_picks(project, annotator, args.reps)
        medians[size] = statistics.median(picks)
        figure("next_task_p50", medians[size], "ms", len(picks), settings)
        figure("next_task_p99", pct(picks, 99), "ms", len(picks), settings)
        figure("submit_judgement_p50", statistics.median(submits), "ms", len(submits), settings)
        figure("submit_judgement_p99", pct(submits, 99), "ms", len(submits), settings)
        for plan in explain_next_task(project, annotator):
            note(f"plan at {size} tasks: {plan}")
        # What every annotate page also computes: the annotator's progress and the work left.
        progress_ms = []
        for _ in range(30):
            t0 = time.perf_counter()
            selectors.annotator_progress(project=project, annotator=annotator)
            progress_ms.append((time.perf_counter() - t0) * 1000)
        figure("annotator_progress_p50", statistics.median(progress_ms), "ms", len(progress_ms), settings)
        progress_medians[size] = statistics.median(progress_ms)
        # The same with gold tasks mixed in at 10 %: each gold attempt runs the gold query first.
        Project.objects.filter(pk=project.pk).update(gold_rate=args.gold_rate)
        project.refresh_from_db()
        mark_gold(project, 20)
        project.gold_rate = 1.0  # in memory only: makes the explained call take the gold branch
        for plan in explain_next_task(project, annotator):
            note(f"plan at {size} tasks, gold branch: {plan}")
        project.refresh_from_db()
        picks, _ = time_picks(project, annotator, max(200, args.reps // 4), warmup=10)
        gold_settings = f"tasks={size} overlap=1 gold_rate={args.gold_rate:g} gold_tasks=20 {DB_LABEL}"
        figure("next_task_gold_p50", statistics.median(picks), "ms", len(picks), gold_settings)
        figure("next_task_gold_p95", pct(picks, 95), "ms", len(picks), gold_settings)
        figure("next_task_gold_mean", statistics.fmean(picks), "ms", len(picks), gold_settings)
        gold_means[size] = statistics.fmean(picks)
        Project.objects.filter(pk=project.pk).update(gold_rate=0)
        project.refresh_from_db()
    small, large = min(args.sizes), max(args.sizes)
    figure("next_task_p50_ratio", medians[large] / medians[small], "x", args.reps,
           f"tasks={large}/{small} {DB_LABEL}")
    figure("annotator_progress_p50_ratio", progress_medians[large] / progress_medians[small], "x", 30,
           f"tasks={large}/{small} {DB_LABEL}")
    figure("next_task_gold_mean_ratio", gold_means[large] / gold_means[small], "x", max(200, args.reps // 4),
           f"tasks={large}/{small} gold_rate={args.gold_rate:g} {DB_LABEL}")

    # An annotator far ahead of the others: overlap 2, and they have judged `trail` tasks that still
    # wait for a second judgement. The pick steps over those (NOT EXISTS per task) before it finds one.
    trail_project = services.create_project(slug="bench-trail", name="Bench trail", completions_per_task=3, overlap=2)
    services.add_member(project=trail_project, username=annotator.username, role="annotator")
    grow_tasks(trail_project, max(args.trails) + args.reps * 3)
    done = 0
    trail_reps = max(50, args.reps // 4)
    for trail in sorted(args.trails):
        if trail > done:  # mark tasks (done, trail] as judged once by this annotator (raw SQL, fast)
            ids = list(ComparisonTask.objects.filter(project=trail_project, status="open")
                       .exclude(assignments__annotator=annotator).order_by("id")
                       .values_list("id", flat=True)[: trail - done])
            with transaction.atomic(), connection.cursor() as cur:
                now = "2026-01-01 00:00:00"
                cur.executemany(
                    f"INSERT INTO {Assignment._meta.db_table} (state, label_order, leased_at, leased_until, "
                    "finished_at, annotator_id, task_id, project_id) VALUES ('submitted', '[]', %s, %s, %s, %s, %s, %s)",
                    [(now, now, now, annotator.pk, tid, trail_project.pk) for tid in ids],
                )
                ComparisonTask.objects.filter(pk__in=ids).update(slots_taken=1, judgements_done=1)
            done = trail
        picks, _ = time_picks(trail_project, annotator, trail_reps, warmup=5)
        # each timed pick + submit adds one more task to the trail: it grows by reps while measuring
        figure("next_task_p50_own_trail", statistics.median(picks), "ms", len(picks),
               f"trail={trail} tasks={trail_project.tasks.count()} overlap=2 {DB_LABEL}")


# --- driver --------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs; 10k vs 100k tasks")
    parser.add_argument("--part", choices=["all", "http", "scale"], default="all")
    parser.add_argument("--duration", type=float, help="seconds per load level (default 15, quick 4)")
    parser.add_argument("--tasks", type=int, help="tasks in the HTTP project (default 30000, quick 10000)")
    parser.add_argument("--overlap", type=int, default=2, help="judgements wanted per task in the HTTP project")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        help="gunicorn worker counts to try (default 2,4; quick 2)")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (config default 2)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="task counts for the scale part (default 10000,1000000; quick 10000,100000)")
    parser.add_argument("--trails", type=lambda s: [int(x) for x in s.split(",")],
                        help="own-trail sizes (default 0,1000,10000; quick 0,1000)")
    parser.add_argument("--gold-rate", type=float, default=0.1, help="gold rate for the gold figures")
    parser.add_argument("--reps", type=int, help="timed picks per size (default 2000, quick 500)")
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (databases, gunicorn log)")
    args = parser.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (4.0 if q else 15.0)
    args.tasks = args.tasks or (10_000 if q else 30_000)
    args.workers = args.workers or ([2] if q else [2, 4])
    args.sizes = sorted(args.sizes or ([10_000, 100_000] if q else [10_000, 1_000_000]))
    args.trails = args.trails or ([0, 1000] if q else [0, 1000, 10_000])
    args.reps = args.reps or (500 if q else 2000)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.workdir:  # a part, run in its own process (Django is set up once per database)
        {"http": part_http, "scale": part_scale}[args.part](args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="annotation-load-"))
    passthrough = list(argv if argv is not None else sys.argv[1:])  # the later --part=… wins
    parts = ["http", "scale"] if args.part == "all" else [args.part]
    note(f"workdir {workdir}; cpus={os.cpu_count()}; python {sys.version.split()[0]}")
    status = 0
    try:
        for part in parts:
            part_dir = workdir / part
            part_dir.mkdir()
            t0 = time.perf_counter()
            rc = subprocess.call(
                [PYTHON, __file__, *passthrough, f"--part={part}", f"--workdir={part_dir}"],
                cwd=ROOT, env=bench_env(part_dir / "db.sqlite3"),
            )
            note(f"part {part} finished with exit code {rc} in {time.perf_counter() - t0:.0f}s")
            status = status or rc
    except KeyboardInterrupt:
        status = 130
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        if args.keep:
            note(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
