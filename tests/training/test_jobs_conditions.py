"""Jobs under real conditions: a locked database, a busy worker, a cancel mid-generation, a killed worker's
job row, a registry left over from an older database."""

import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from feedback import importing
from feedback import services as feedback_services
from feedback.models import ComparisonTask, Completion
from tests.training.test_worker import judged_project, run_state, wait_for, worker  # noqa: F401  (fixtures)
from training import execution, services, tasks
from training.models import ModelVersion, TrainingRun
from training.pipeline.models import manifest_sha256
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db(transaction=True)


def running_run(project, *, heartbeat_age: float = 0.0) -> TrainingRun:
    run = make_run(project=project, kind=TrainingRun.Kind.REWARD)
    assert services.claim_run(run_id=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age))
    return run


def heartbeat_at(run_id):
    return TrainingRun.objects.filter(pk=run_id).values_list("heartbeat_at", flat=True).get()


@pytest.fixture
def fast_beats(settings):
    settings.RUN_HEARTBEAT_SECONDS = 0.3


def start_heartbeat(run) -> execution.Heartbeat:
    heartbeat = execution.Heartbeat(SimpleNamespace(run=run, cancel_requested=False))
    heartbeat.start()
    wait_for(lambda: heartbeat.beats >= 1, timeout=10, what="a first beat")
    return heartbeat


def test_heartbeat_outlives_a_write_lock_held_longer_than_a_beat(project, fast_beats):
    if connection.vendor != "sqlite":
        pytest.skip("BEGIN IMMEDIATE is SQLite's write lock")
    run = running_run(project)
    options = connection.settings_dict["OPTIONS"]
    saved_timeout = options.get("timeout")
    options["timeout"] = 0.2  # the heartbeat thread's own connection gives up fast: a real "database is locked"
    heartbeat = start_heartbeat(run)
    try:
        locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=5, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        time.sleep(2.0)  # several beats' worth
        held_errors = heartbeat.errors
        locker.execute("COMMIT")
        locker.close()
        released = timezone.now()
        assert held_errors >= 1, "the lock should have refused at least one beat"
        assert heartbeat.is_alive()
        wait_for(lambda: heartbeat_at(run.pk) >= released, timeout=10, what="a beat after the lock was released")
        assert heartbeat.is_alive()
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=10)
        options["timeout"] = saved_timeout


def test_heartbeat_retries_after_a_transient_error(project, fast_beats, monkeypatch):
    run = running_run(project)
    real_beat, calls = services.beat, []

    def flaky_beat(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_beat(**kwargs)

    monkeypatch.setattr(services, "beat", flaky_beat)
    heartbeat = start_heartbeat(run)
    try:
        wait_for(lambda: heartbeat.beats >= 3, timeout=10, what="beats after the error")
        assert heartbeat.errors == 1 and heartbeat.is_alive()
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=10)


def test_readyz_counts_a_worker_busy_with_one_long_job(project, client):
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()
    stale = running_run(project, heartbeat_age=3600)
    assert client.get("/readyz").status_code == 503  # an old heartbeat is no sign of life
    TrainingRun.objects.filter(pk=stale.pk).update(state=TrainingRun.State.FAILED)
    running_run(project, heartbeat_age=5)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["worker"] == "ok"


def test_maintenance_runs_beside_a_long_job_and_fails_the_dead_workers_job_row(project):
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    dead = running_run(project, heartbeat_age=3600)
    job = tasks.run_training_job.enqueue(dead.pk)
    DBTaskResult.objects.filter(pk=job.id).update(status=TaskResultStatus.RUNNING, started_at=timezone.now())
    with tasks.maintenance_alongside(interval=0.2) as thread:  # the main thread is busy with "a long job"
        wait_for(lambda: run_state(dead.pk)[0] == "failed", timeout=20, what="maintenance beside the job")
    assert thread.rounds >= 1 and not thread.is_alive()
    row = DBTaskResult.objects.get(pk=job.id)
    assert row.status == TaskResultStatus.FAILED and "heartbeats" in row.traceback
    # …and the every-minute tick is scheduled again.
    assert DBTaskResult.objects.filter(task_path__endswith="maintenance_tick", status=TaskResultStatus.READY).exists()


def test_a_stale_run_someone_cancelled_ends_cancelled(project):
    run = running_run(project, heartbeat_age=3600)
    services.request_cancel(run=run)
    assert services.fail_stale_runs() == 1
    assert run_state(run.pk)[0] == "cancelled"


@pytest.fixture
def tiny_policy(tiny_llama_dir):
    return services.register_version(
        project=None, name="tiny-policy", kind=ModelVersion.Kind.POLICY, path=str(tiny_llama_dir),
        sha256=manifest_sha256(tiny_llama_dir), config={}, metrics={}, activate=True,
    )


@pytest.fixture
def worker_without_heartbeat(tmp_path):
    """A db_worker process whose heartbeat never beats during a test: a cancel can reach its run only directly."""
    import os
    import signal
    import subprocess
    import sys

    from tests.training.test_worker import ROOT, database_url

    procs = []

    def start():
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": database_url(),
               "MODEL_DIR": str(tmp_path / "models"), "EXPORT_DIR": str(tmp_path / "exports"),
               "RUN_HEARTBEAT_SECONDS": "3600", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        procs.append(subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--queue-name", "*", "--interval", "0.2", "--no-startup-delay"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_cancel_mid_generation_reaches_the_sampling_loop_and_ends_cancelled(
        project, tiny_policy, worker_without_heartbeat):
    """The cancel is asked for while the run samples one batch of 16 answers × 900 tokens; with no heartbeat to
    carry it (the worker's beats every hour), the sampling loop reads it itself: the run ends cancelled, publishes
    and registers nothing, and stops inside the sampling, before its first step and short of the tokens asked for.
    (How fast: bench/cancel_latency.py.)"""
    prompts, k, max_new_tokens = 8, 2, 900  # one batch (16 rows): a cancel must stop it mid-batch
    rows = [importing.clean_row({"id": f"q-{i}", "prompt": f"Say something about {i}."}, i + 1) for i in range(prompts)]
    feedback_services.import_prompts(project=project, rows=rows)
    versions = ModelVersion.objects.count()
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={
        "max_new_tokens": max_new_tokens, "completions_per_prompt": k, "temperature": 1.0})
    worker_without_heartbeat()
    wait_for(lambda: "sampling" in TrainingRun.objects.get(pk=run.pk).log, timeout=120, what="sampling to start")
    services.request_cancel(run=TrainingRun.objects.get(pk=run.pk))
    wait_for(lambda: run_state(run.pk)[0] in {"cancelled", "failed", "succeeded"}, timeout=120, what="the cancel")
    run.refresh_from_db()
    assert run.state == TrainingRun.State.CANCELLED, run.log
    assert not Completion.objects.exists() and not ComparisonTask.objects.exists()
    assert ModelVersion.objects.count() == versions and run.produced_version is None
    assert run_state(run.pk)[2] == []  # stopped before step 1 (publishing records it once sampling is done)
    assert run.summary["stopped"] == "cancelled"
    assert run.summary["generated_tokens"] < prompts * k * max_new_tokens


def test_leftover_registry_directory_of_an_old_database_is_kept_and_the_run_succeeds(
        judged_project, tiny_backbone, settings):  # noqa: F811
    from feedback import services as feedback_services
    from feedback.exports import ExportFilters

    # Most prompts held out: acceptance needs enough held-out tasks (a task-clustered bound) on this small project.
    snapshot = feedback_services.create_snapshot(project=judged_project, filters=ExportFilters(test_fraction=0.6))
    run = make_run(project=judged_project, kind=TrainingRun.Kind.REWARD, snapshot=snapshot,
                              config={"backbone": str(tiny_backbone), "max_steps": 8, "batch_size": 8,
                                      "learning_rate": 1e-3, "logging_steps": 1, "max_length": 128})
    leftover = Path(settings.MODEL_DIR) / "registry" / f"reward-{judged_project.slug}-run{run.pk}"
    leftover.mkdir(parents=True)
    (leftover / "manifest.json").write_text("{}")
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED, TrainingRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert Path(run.produced_version.path) != leftover and Path(run.produced_version.path, "manifest.json").exists()
    assert (leftover / "manifest.json").read_text() == "{}"  # never overwritten
    assert leftover.name in run.log


def test_cancelling_a_chain_reaches_its_running_step(project):
    parent = running_run(project)
    child = make_run(project=project, kind=TrainingRun.Kind.REWARD, parent_run=parent)
    assert services.claim_run(run_id=child.pk)
    assert services.beat(run_id=child.pk) is False
    services.request_cancel(run=parent)
    assert services.beat(run_id=child.pk) is True


def test_generation_stops_between_decode_steps(tiny_llama_dir):
    from training.pipeline.callbacks import TrainingCancelled, counting_tokens
    from training.pipeline.sampling.generate import sample_ids
    from training.pipeline.models import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm(tiny_llama_dir), load_tokenizer(tiny_llama_dir)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 5

    generated = []
    with counting_tokens(generated.append), pytest.raises(TrainingCancelled):
        sample_ids(model, tokenizer, [[1, 2, 3]], max_new_tokens=100_000, temperature=1.0, should_stop=should_stop)
    # Asked once before the batch, then after every decode step: the sixth answer came after the fifth token, and
    # no sixth token was drawn.
    assert len(polls) == 6 and generated == [1] * 5
