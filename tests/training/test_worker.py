"""The job worker end to end: a real `manage.py db_worker` process trains a tiny reward model.

Judgements go in through the services, the worker takes the queued run from the database, and the
test watches the run the way the run page does. Killing the worker with SIGKILL leaves nothing in
the registry, and the run is marked failed once its heartbeat is stale.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from feedback import services as feedback_services
from tests.feedback.factories import make_member
from training import services
from training import selectors
from training.models import ModelVersion, TrainingRun, TrainingRunMetric

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER'] or 'postgres'}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def worker(tmp_path):
    """Start db_worker processes against the test database; stop (or find killed) at the end."""
    procs = []

    def start():
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": database_url(),
               "MODEL_DIR": str(tmp_path / "models"),
               "EXPORT_DIR": str(tmp_path / "exports"), "RUN_HEARTBEAT_SECONDS": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--queue-name", "*", "--interval", "0.2", "--no-startup-delay"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for(predicate, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def run_state(run_id):
    state, progress = TrainingRun.objects.filter(pk=run_id).values_list("state", "progress").get()
    return state, progress, list(TrainingRunMetric.objects.filter(run_id=run_id).values_list("step", flat=True))


@pytest.fixture
def judged_project(project, capital_rows):
    """A project whose annotators prefer the completion that answers the question (a learnable rule)."""
    from feedback import importing

    rows = [importing.clean_row(r, i + 1) for i, r in enumerate(capital_rows)]
    feedback_services.import_prompts(project=project, rows=rows)
    people = [make_member(project) for _ in range(project.overlap)]
    for person in people:
        while (held := feedback_services.next_task(project=project, annotator=person)) is not None:
            texts = dict(held.task.completions.values_list("id", "model_name"))
            order = sorted(held.label_map().items(), key=lambda item: texts[item[1]] != "answers")
            feedback_services.submit_judgement(task=held.task, annotator=person, ranking=[[label] for label, _ in order])
    return project


def test_worker_trains_and_registers_a_reward_model(judged_project, tiny_backbone, worker):
    from feedback import services as feedback_services
    from feedback.exports import ExportFilters

    # Most prompts held out: acceptance needs enough held-out tasks (a task-clustered bound) on this small project.
    snapshot = feedback_services.create_snapshot(project=judged_project, filters=ExportFilters(test_fraction=0.6))
    run = services.start_training(project=judged_project, kind=TrainingRun.Kind.REWARD, snapshot=snapshot, config={
        "backbone": str(tiny_backbone), "max_steps": 8, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1,
        "max_length": 128,
    })
    worker()
    wait_for(lambda: run_state(run.pk)[0] in {"succeeded", "failed"}, what="the run to finish")
    run.refresh_from_db()
    assert run.state == TrainingRun.State.SUCCEEDED, run.error
    version = run.produced_version
    assert version.kind == ModelVersion.Kind.REWARD and version.snapshot == run.snapshot
    assert version.metrics["eval/accuracy"] is not None
    assert run.snapshot.counts["pairs"] > 0 and len(selectors.run_metrics(run=run)) >= 3
    assert Path(version.path, "manifest.json").exists()


def test_cancel_and_sigkill(judged_project, tiny_backbone, worker):
    long = {"backbone": str(tiny_backbone), "max_steps": 100_000, "batch_size": 2, "logging_steps": 1, "max_length": 128}
    cancelled = services.start_training(project=judged_project, kind=TrainingRun.Kind.REWARD, config=long)
    proc = worker()
    wait_for(lambda: len(run_state(cancelled.pk)[2]) >= 2, what="training steps")
    services.request_cancel(run=TrainingRun.objects.get(pk=cancelled.pk))
    wait_for(lambda: run_state(cancelled.pk)[0] == "cancelled", what="the cancellation")

    killed = services.start_training(project=judged_project, kind=TrainingRun.Kind.REWARD, config=long)
    wait_for(lambda: len(run_state(killed.pk)[2]) >= 2, what="training steps of the second run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert run_state(killed.pk)[0] == "running"  # nobody is left to say otherwise…
    time.sleep(3)
    job = DBTaskResult.objects.get(task_path=services.RUN_JOB_TASK_PATH, args_kwargs__args__0=killed.pk)
    assert job.status == TaskResultStatus.RUNNING
    assert services.fail_stale_runs(stale_after_seconds=2) == 1  # …until the heartbeat check
    assert run_state(killed.pk)[0] == "failed"
    assert not ModelVersion.objects.filter(kind=ModelVersion.Kind.REWARD).exists()
    job.refresh_from_db()  # the job row of the killed worker does not stay RUNNING either
    assert job.status == TaskResultStatus.FAILED and job.finished_at is not None
    assert TrainingRun.objects.get(pk=cancelled.pk).state == "cancelled"  # never "failed" after a cancel


def launched_processes(scratch_root: Path) -> list[int]:
    """Live processes of a launch under `scratch_root` (the launcher and its ranks name the job file in their
    command line); a killed process left unreaped (a zombie) has no command line and does not count."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(scratch_root) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.info["pid"])
    return found


def test_a_worker_killed_with_sigkill_takes_its_launched_processes_with_it(judged_project, tiny_backbone, worker,
                                                                            tmp_path):
    long = {"backbone": str(tiny_backbone), "max_steps": 100_000, "batch_size": 2, "logging_steps": 1,
            "max_length": 128, "processes": 2}
    run = services.start_training(project=judged_project, kind=TrainingRun.Kind.REWARD, config=long)
    proc = worker()
    wait_for(lambda: len(run_state(run.pk)[2]) >= 1, timeout=300, what="training steps of the launched run")
    scratch_root = tmp_path / "models" / "launch"
    assert len(launched_processes(scratch_root)) >= 3  # accelerate launch and its two ranks

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    try:
        wait_for(lambda: not launched_processes(scratch_root), timeout=10, what="the launched processes to end")
    finally:  # a failing test leaves no trainers behind either
        for pid in launched_processes(scratch_root):
            os.kill(pid, signal.SIGKILL)
