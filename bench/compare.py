#!/usr/bin/env python
"""Our annotate/import/export path next to Label Studio's, the same workloads interleaved, one table.

    .venv/bin/python bench/compare.py [--rounds 3] [--duration 10] [--pairs 20000] [--label-studio-venv PATH]

Workloads (each side gets its own server process group and throw-away SQLite database):

    submit_16       16 client threads, each looping next-task -> submit     req/s, p99 ms, server CPU ms/request
    loop_1          1 annotator looping next-task -> submit                 loops/s, server CPU ms/loop
    import_20k      --pairs prompt pairs (2 completions each) in one upload seconds, server CPU s
    export_20k      --pairs judged pairs exported (ours JSON lines, LS JSON) rows/s, server CPU s

Server CPU is read from /proc: utime + stime of every process in the server's process group plus the reaped
children's (cutime + cstime of the group leader), before and after each run. Rounds interleave the sides
(ours, theirs, ours, …) so a busy machine weighs on both alike; the table shows medians over rounds. The load
generator runs here too, on the same cores: its own CPU per request (this process) is printed beside the server's;
the annotate workloads use a light keep-alive client on `http.client` (bench/_http.py), not `requests`.

Without --label-studio-venv (a virtualenv with `label-studio` installed; run with 1.23.2) Label Studio's column
says "not measured". Both sides serve the same pair texts from gunicorn with the same --workers/--threads, on
SQLite in WAL mode; Label Studio is set up by its own `label-studio init` code (server._create_user: 17 users with
API tokens) and driven through its documented REST API (projects, import, /next, annotations, GET /export).
After each annotate run both sides count judgements on tasks someone had already judged (overlap is 1 on both).
`--keep` leaves the work directory (databases, server logs) for a look afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import annotation_load as load  # noqa: E402  (Gunicorn, bench_env, prompt_rows, pct, free_port)
from _http import KeepAliveSession  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ("submit_16", "loop_1", "import_20k", "export_20k")
CLIENT = {"name": "http"}  # the annotate workloads' client: "http" (bench/_http.py) or "requests" (--client)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by the process group `pgid` (live members, plus reaped children of the leader)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) != pgid:  # fields[0] is the state; 2 is the process group
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if int(entry) == pgid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: workers that exited (max_requests)
    return total / CLK_TCK


def http_loop(session_factory, step, clients: int, duration: float) -> tuple[int, list[float], int]:
    """Run `step(session)` (one loop: returns the latencies of its requests in ms, or None when out of work)
    in `clients` threads for `duration` seconds. Returns (requests, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration

    def run():
        session = session_factory()
        while time.perf_counter() < stop_at:
            try:
                got = step(session)
            except Exception as exc:  # noqa: BLE001 - a benchmark counts failures, it does not stop on them
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:
                        print(f"# error: {str(exc)[:300]}", file=sys.stderr, flush=True)
                continue
            if got is None:
                return
            with lock:
                latencies.extend(got)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), latencies, errors[0]


def measured(server_pgid: int, fn):
    """(result of fn(), wall seconds, server CPU seconds)."""
    c0, w0 = group_cpu_seconds(server_pgid), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - w0, group_cpu_seconds(server_pgid) - c0


def pair_rows(n: int, tag: str) -> list[dict]:
    """`n` prompts with two completions each; both sides annotate, import and export exactly these texts."""
    return [{"id": f"{tag}-{i}", "prompt": f"{tag} prompt {i}: explain item {i} briefly.",
             "completions": [f"Answer {j} to {tag} prompt {i}. " + "lorem ipsum " * 20 for j in (0, 1)]}
            for i in range(n)]


class _Server:
    """What both servers share: `clients` annotators, each with a token of its own (the 1-annotator loop takes one
    the 16-client run did not use), looping `annotate_step` for `duration` seconds, with the server's CPU measured."""

    def annotate(self, clients: int, duration: float):
        tokens = iter(self.tokens[:clients] if clients > 1 else self.tokens[16:])
        lock = threading.Lock()

        def factory():  # the light keep-alive client: the load generator shares the server's cores (bench/_http.py)
            with lock:
                token = next(tokens)
            return self.session(token) if CLIENT["name"] == "requests" else \
                KeepAliveSession(self.url, {"Authorization": f"Token {token}"})

        return measured(self.pgid, lambda: http_loop(factory, self.annotate_step, clients, duration))


# --- our side ---------------------------------------------------------------------------------------------------


class Ours(_Server):
    name = "ours"

    def __init__(self, work: Path, pairs: int, tasks: int, workers: int, threads: int):
        import requests

        self.requests, self.work, self.pairs = requests, work, pairs
        db = work / "ours.sqlite3"
        os.environ.update(load.bench_env(db))
        load.setup_django()
        from feedback import importing, services

        self.project = services.create_project(slug="cmp", completions_per_task=2, overlap=1, lease_seconds=600)
        services.import_prompts(project=self.project,
                                rows=[importing.clean_row(row, i + 1) for i, row in enumerate(pair_rows(tasks, "annotate"))])
        self.tokens = [services.add_member(project=self.project, username=f"cmp-{i}", role="annotator")[1].key
                       for i in range(17)]
        self.admin_token = services.add_member(project=self.project, username="cmp-admin", role="admin")[1].key
        self.export_slug = build_judged_pairs(pairs)
        from django.db import connections

        connections.close_all()
        self.server = load.Gunicorn(load.bench_env(db), workers=workers, threads=threads, log_path=work / "ours-gunicorn.log")
        self.server.wait_ready(self.admin_token)
        self.pgid, self.url = self.server.proc.pid, self.server.url
        self.import_round = 0

    def session(self, token: str):
        s = self.requests.Session()
        s.headers["Authorization"] = f"Token {token}"
        return s

    def annotate_step(self, s) -> list[float] | None:
        t0 = time.perf_counter()
        r = s.post(f"{self.url}/api/v1/projects/cmp/next-task/", timeout=60)
        t1 = time.perf_counter()
        if r.status_code == 204:
            return None
        r.raise_for_status()
        body = r.json()
        r = s.post(f"{self.url}/api/v1/tasks/{body['task']}/judgements/",
                   json={"ranking": [[c["label"]] for c in body["completions"]]},
                   headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=60)
        t2 = time.perf_counter()
        if r.status_code != 201:
            raise RuntimeError(f"submit {r.status_code}: {r.text[:200]}")
        return [(t1 - t0) * 1000, (t2 - t1) * 1000]

    def annotation_counts(self) -> tuple[int, int]:
        """(judgements, distinct tasks judged) in the annotate project."""
        from feedback.models import Judgement

        judged = Judgement.objects.filter(task__project=self.project)
        return judged.count(), judged.values("task").distinct().count()

    def import_pairs(self):
        self.import_round += 1
        lines = "".join(json.dumps(row) + "\n" for row in pair_rows(self.pairs, f"import{self.import_round}"))
        from feedback import services

        slug = f"cmp-import-{self.import_round}"
        services.create_project(slug=slug, completions_per_task=2, overlap=1)
        services.add_member(project=type(self.project).objects.get(slug=slug), username="cmp-admin", role="admin")
        s = self.session(self.admin_token)

        def post():
            r = s.post(f"{self.url}/api/v1/projects/{slug}/import/", files={"file": ("pairs.jsonl", lines.encode())},
                       timeout=600)
            r.raise_for_status()
            return r.json()["tasks_created"]

        return measured(self.pgid, post)

    def export_pairs(self):
        s = self.session(self.admin_token)

        def get():
            with s.get(f"{self.url}/api/v1/projects/{self.export_slug}/export/?test_fraction=0", stream=True,
                       timeout=600) as r:
                r.raise_for_status()
                return sum(1 for line in r.iter_lines() if line)

        return measured(self.pgid, get)

    def stop(self):
        self.server.stop()


def build_judged_pairs(pairs: int) -> str:
    """A project of `pairs` tasks of two completions, each judged once (bulk rows, as bench/export.py builds)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from feedback import services
    from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Prompt

    project = services.create_project(slug="cmp-export", overlap=1)
    services.add_member(project=project, username="cmp-admin", role="admin")
    user = services.add_member(project=project, username="cmp-judge", role="annotator")[0].user
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = pair_rows(pairs, "export")
    from feedback.services.prompts import _insert_many as ins
    with transaction.atomic():
        ins(Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
            [(project.pk, row["id"], row["prompt"], None, f"xh{i}", {}, now) for i, row in enumerate(rows)])
        p0 = Prompt.objects.filter(project=project).order_by("id").values_list("id", flat=True).first()
        ins(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"],
            [(p0 + i, rows[i]["completions"][j], f"model-{j}", {}, f"xc{i}-{j}", now)
             for i in range(pairs) for j in range(2)])
        c0 = Completion.objects.filter(prompt_id=p0).order_by("id").values_list("id", flat=True).first()
        ins(ComparisonTask, ["project", "prompt", "status", "judgements_needed", "judgements_done", "slots_taken",
                             "priority", "is_gold", "created_at"],
            [(project.pk, p0 + i, "complete", 1, 1, 1, 0, False, now) for i in range(pairs)])
        t0 = ComparisonTask.objects.filter(project=project).order_by("id").values_list("id", flat=True).first()
        ins(ComparisonTask.completions.through, ["comparisontask", "completion"],
            [(t0 + i, c0 + 2 * i + j) for i in range(pairs) for j in range(2)])
        ins(Assignment, ["task", "annotator", "project", "state", "label_order", "leased_at", "leased_until",
                         "finished_at"],
            [(t0 + i, user.pk, project.pk, "submitted", [c0 + 2 * i, c0 + 2 * i + 1], now, now, now)
             for i in range(pairs)])
        a0 = Assignment.objects.filter(project=project).order_by("id").values_list("id", flat=True).first()
        ins(Judgement, ["task", "annotator", "assignment", "ranking", "ranking_labels", "flags", "confidence",
                        "comment", "seconds_spent", "idempotency_key", "created_at"],
            [(t0 + i, user.pk, a0 + i, [[c0 + 2 * i + i % 2], [c0 + 2 * i + 1 - i % 2]], [["a"], ["b"]], [], 3, "",
              5.0, "", now) for i in range(pairs)])
    return project.slug


# --- Label Studio's side -----------------------------------------------------------------------------------------

# Label Studio's own pairwise template (ranking-and-scoring/pairwise-classification) with a prompt above the pair.
PAIRWISE_CONFIG = """<View><Text name="prompt" value="$prompt"/><Pairwise name="pw" toName="a,b"/>
<Text name="a" value="$a"/><Text name="b" value="$b"/></View>"""
# The result the template's own example annotation holds (to_name is the control's name there).
PAIRWISE_RESULT = {"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": "left"}}

# Run in Label Studio's venv before its server starts: migrations, then users made by its own `label-studio init`
# code (server._create_user: organisation member, API token of our choosing, legacy tokens on), annotators
# demoted from the superuser that function makes, and the SQLite file switched to WAL as ours runs.
LS_SETUP = """
import json, sys, types
from label_studio import server
server._setup_env()
server._apply_database_migrations()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode=WAL")
from users.models import User
for i, (email, token) in enumerate(json.load(sys.stdin)):
    server._create_user(types.SimpleNamespace(username=email, password="bench-pass-123", user_token=token,
                                              quiet_mode=True, enable_legacy_api_token=True), {})
    if i:
        User.objects.filter(email=email).update(is_superuser=False, is_staff=False)
"""


class LabelStudio(_Server):
    """Label Studio (Community edition, SQLite) under the same gunicorn settings as ours: `label-studio start`
    serves with Django's single-process runserver, which would not be a like-for-like comparison."""

    name = "label-studio"

    def __init__(self, work: Path, pairs: int, tasks: int, venv: Path, workers: int, threads: int):
        import requests

        self.requests, self.pairs = requests, pairs
        tokens = [uuid.uuid4().hex for _ in range(18)]
        self.admin_token, self.tokens = tokens[0], tokens[1:]
        package = next((venv / "lib").glob("python3*/site-packages/label_studio"))
        # gunicorn runs in the package directory, as `label-studio start` puts it on sys.path (its apps import as
        # top-level `core`, `users`, …); PYTHONPATH would also load the package's sitecustomize.py, a coverage
        # hook for Label Studio's own tests.
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")}
        env.update(DJANGO_DB="sqlite", LABEL_STUDIO_BASE_DATA_DIR=str(work / "ls-data"), DEBUG="false",
                   DJANGO_SETTINGS_MODULE="label_studio.core.settings.label_studio", LOG_LEVEL="WARNING",
                   LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
                   # no telemetry, Sentry or PyPI version check: nothing leaves the machine during a run
                   COLLECT_ANALYTICS="false", SENTRY_DSN="", FRONTEND_SENTRY_DSN="", LATEST_VERSION_CHECK="false")
        self.log_path = work / "label-studio.log"
        self.log = open(self.log_path, "ab")
        users = [["bench-admin@example.com", self.admin_token]] + [
            [f"annotator{i}@example.com", token] for i, token in enumerate(self.tokens)]
        subprocess.run([str(venv / "bin" / "python"), "-c", LS_SETUP], input=json.dumps(users).encode(), env=env,
                       stdout=self.log, stderr=subprocess.STDOUT, check=True, timeout=600)
        port = load.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "gunicorn"), "label_studio.core.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--threads", str(threads), "--timeout", "600", "--max-requests", "2000",
             "--max-requests-jitter", "200", "--no-control-socket"],  # no access log, as ours
            cwd=package, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        try:
            self.populate(tasks, pairs)
        except BaseException:
            self.stop()
            raise

    def populate(self, tasks: int, pairs: int) -> None:
        self.wait_ready()
        self.project = self.create_project("annotate")
        self.post_tasks(self.project, [self.task(row) for row in pair_rows(tasks, "annotate")])
        self.export_project = self.create_project("export")
        self.post_tasks(self.export_project, [{"data": self.task(row), "annotations": [{"result": [PAIRWISE_RESULT]}]}
                                              for row in pair_rows(pairs, "export")])
        self.import_round = 0

    @staticmethod
    def task(row: dict) -> dict:
        return {"prompt": row["prompt"], "a": row["completions"][0], "b": row["completions"][1]}

    def session(self, token: str | None = None):
        s = self.requests.Session()
        s.headers["Authorization"] = f"Token {token or self.admin_token}"
        return s

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}; its log ends:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                if self.session().get(f"{self.url}/api/projects/", timeout=5).status_code == 200:
                    return
            except self.requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError("label-studio did not answer in time; its log ends:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def create_project(self, title: str) -> int:
        r = self.session().post(f"{self.url}/api/projects/", json={"title": f"bench {title}",
                                                                   "label_config": PAIRWISE_CONFIG}, timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"create project {r.status_code}: {r.text[:300]}")
        return r.json()["id"]

    def post_tasks(self, project: int, tasks: list) -> int:
        r = self.session().post(f"{self.url}/api/projects/{project}/import", json=tasks, timeout=1200)
        if r.status_code != 201:
            raise RuntimeError(f"import {r.status_code}: {r.text[:300]}")
        return r.json()["task_count"]

    def annotate_step(self, s) -> list[float] | None:
        t0 = time.perf_counter()
        r = s.get(f"{self.url}/api/projects/{self.project}/next/", timeout=60)
        t1 = time.perf_counter()
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RuntimeError(f"next {r.status_code}: {r.text[:200]}")
        r = s.post(f"{self.url}/api/tasks/{r.json()['id']}/annotations/", json={"result": [PAIRWISE_RESULT]},
                   timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"annotate {r.status_code}: {r.text[:200]}")
        return [(t1 - t0) * 1000, (time.perf_counter() - t1) * 1000]

    def annotation_counts(self) -> tuple[int, int]:
        """(annotations, distinct tasks annotated) in the annotate project."""
        r = self.session().get(f"{self.url}/api/projects/{self.project}/", timeout=60)
        r.raise_for_status()
        return r.json()["total_annotations_number"], r.json()["num_tasks_with_annotations"]

    def import_pairs(self):
        self.import_round += 1
        project = self.create_project(f"import {self.import_round}")
        tasks = [self.task(row) for row in pair_rows(self.pairs, f"import{self.import_round}")]
        return measured(self.pgid, lambda: self.post_tasks(project, tasks))

    def export_pairs(self):
        def get():
            r = self.session().get(f"{self.url}/api/projects/{self.export_project}/export?exportType=JSON",
                                   timeout=1200)
            r.raise_for_status()
            return len(r.json())

        return measured(self.pgid, get)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.pgid, 15)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                os.killpg(self.pgid, 9)
                self.proc.wait()
        self.log.close()


# --- rounds and the table -----------------------------------------------------------------------------------------


def run_workload(side, workload: str, duration: float) -> dict:
    """One run of one workload on one side: the figures of its table cell."""
    if workload in ("submit_16", "loop_1"):
        clients = 16 if workload == "submit_16" else 1
        before = side.annotation_counts()
        client_cpu = time.process_time()  # the load generator shares the 2 cores: how much of them it took
        (requests_done, latencies, errors), wall, cpu = side.annotate(clients, duration)
        client_cpu = time.process_time() - client_cpu
        after = side.annotation_counts()
        loops = requests_done / 2
        # A judgement on a task someone else already judged (overlap 1 on both sides) is wasted work.
        duplicates = (after[0] - before[0]) - (after[1] - before[1])
        return {"rate": (requests_done if clients > 1 else loops) / wall,
                "p99": load.pct(latencies, 99), "cpu_ms": 1000 * cpu / max(1, requests_done if clients > 1 else loops),
                "errors": errors, "duplicates": duplicates, "judged": after[0] - before[0],
                "client_cpu_ms": 1000 * client_cpu / max(1, requests_done if clients > 1 else loops)}
    if workload == "import_20k":
        created, wall, cpu = side.import_pairs()
        return {"rate": wall, "cpu_s": cpu, "n": created}
    rows, wall, cpu = side.export_pairs()
    return {"rate": rows / wall, "cpu_s": cpu, "n": rows}


def medians(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def cell(runs: list[dict] | None, workload: str) -> str:
    if not runs:
        return "not measured"
    med = medians(runs)
    errors = f", {sum(r['errors'] for r in runs)} errors" if sum(r.get("errors", 0) for r in runs) else ""
    if sum(r.get("duplicates", 0) for r in runs):
        errors += (f", {sum(r['duplicates'] for r in runs)} of {sum(r['judged'] for r in runs)} judgements"
                   " on tasks already judged")
    if workload == "submit_16":
        return (f"{med['rate']:.1f} req/s, p99 {med['p99']:.0f} ms, {med['cpu_ms']:.1f} ms CPU/req "
                f"(client {med['client_cpu_ms']:.1f}){errors}")
    if workload == "loop_1":
        return f"{med['rate']:.1f} loops/s, {med['cpu_ms']:.1f} ms CPU/loop{errors}"
    if workload == "import_20k":
        return f"{med['rate']:.1f} s, {med['cpu_s']:.1f} s CPU"
    return f"{med['rate']:.0f} rows/s, {med['cpu_s']:.1f} s CPU"


def ratio(ours: list[dict] | None, theirs: list[dict] | None, workload: str) -> str:
    """How many times faster ours is (time or rate, median of each side), and how many times less server CPU."""
    if not ours or not theirs:
        return "–"
    a, b = medians(ours), medians(theirs)
    cpu = "cpu_ms" if workload in ("submit_16", "loop_1") else "cpu_s"
    speed = b["rate"] / a["rate"] if workload == "import_20k" else a["rate"] / b["rate"]
    return f"{speed:.1f}× faster, {b[cpu] / a[cpu]:.1f}× less CPU" if a[cpu] else f"{speed:.1f}× faster"


UNITS = {"submit_16": "16 clients, next-task+submit", "loop_1": "1 annotator, next-task->submit",
         "import_20k": "import {pairs} pairs", "export_20k": "export {pairs} pairs"}


def print_table(results: dict, pairs: int, rounds: int) -> None:
    theirs = results.get("label-studio", {})
    print("| workload | ours | Label Studio | ours vs Label Studio |\n|---|---|---|---|")
    for workload in WORKLOADS:
        if workload not in results["ours"]:
            continue
        print(f"| {workload} ({UNITS[workload].format(pairs=pairs)}) | {cell(results['ours'].get(workload), workload)} "
              f"| {cell(theirs.get(workload), workload)} | {ratio(results['ours'].get(workload), theirs.get(workload), workload)} |")
    print(f"\nmedians over {rounds} interleaved rounds; server CPU from /proc (utime+stime of the server's "
          f"process group); SQLite on both sides")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds per annotate run")
    parser.add_argument("--pairs", type=int, default=20_000, help="pairs imported and exported")
    parser.add_argument("--tasks", type=int, default=30_000, help="tasks for the annotate runs (enough for every round)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both sides")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker, both sides")
    parser.add_argument("--label-studio-venv", type=Path, help="a virtualenv with label-studio installed")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--client", choices=("http", "requests"), default="http",
                        help="the annotate workloads' HTTP client: the light keep-alive one (default) or requests")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, server logs)")
    args = parser.parse_args(argv)
    CLIENT["name"] = args.client
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    sides = []
    try:
        sides.append(Ours(work, args.pairs, args.tasks, args.workers, args.threads))
        if args.label_studio_venv:
            sides.append(LabelStudio(work, args.pairs, args.tasks, args.label_studio_venv, args.workers, args.threads))
        results: dict = {side.name: {} for side in sides}
        for workload in args.workloads.split(","):
            for r in range(args.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    got = run_workload(side, workload, args.duration)
                    results[side.name].setdefault(workload, []).append(got)
                    print(f"# {workload} round {r + 1} {side.name}: {got}", file=sys.stderr, flush=True)
        print_table(results, args.pairs, args.rounds)
    finally:
        for side in sides:
            side.stop()
        if args.keep:
            print(f"# kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
