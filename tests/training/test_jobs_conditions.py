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

pytestmark = pytest.mark.django_db(transaction=True)


def running_run(project, *, heartbeat_age: float = 0.0) -> TrainingRun:
    run = services.create_run(project=project, kind=TrainingRun.Kind.REWARD, enqueue=False)
    assert services.start_run(run_id=run.pk)
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


def test_cancel_mid_generation_ends_cancelled_within_seconds(project, tiny_policy, worker):  # noqa: F811
    rows = [importing.clean_row({"id": f"q-{i}", "prompt": f"Say something about {i}."}, i + 1) for i in range(3)]
    feedback_services.import_prompts(project=project, rows=rows)
    versions = ModelVersion.objects.count()
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={
        "max_new_tokens": 50_000, "completions_per_prompt": 2, "temperature": 1.0})
    worker()
    wait_for(lambda: "sampling" in TrainingRun.objects.get(pk=run.pk).log, timeout=120, what="sampling to start")
    time.sleep(2)  # well inside generation
    asked = time.monotonic()
    services.request_cancel(run=TrainingRun.objects.get(pk=run.pk))
    wait_for(lambda: run_state(run.pk)[0] in {"cancelled", "failed", "succeeded"}, timeout=30, what="the cancel")
    took = time.monotonic() - asked
    run.refresh_from_db()
    assert run.state == TrainingRun.State.CANCELLED, run.log
    assert took < 10, f"cancel took {took:.1f} s"
    assert not Completion.objects.exists() and not ComparisonTask.objects.exists()
    assert ModelVersion.objects.count() == versions


def test_leftover_registry_directory_of_an_old_database_is_kept_and_the_run_succeeds(
        judged_project, tiny_backbone, settings):  # noqa: F811
    from feedback import services as feedback_services
    from feedback.exports import ExportFilters

    # A third of the prompts held out, so the model's acceptance can be decided on this small project.
    snapshot = feedback_services.create_snapshot(project=judged_project, filters=ExportFilters(test_fraction=0.35))
    run = services.create_run(project=judged_project, kind=TrainingRun.Kind.REWARD, enqueue=False, snapshot=snapshot,
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
    child = services.create_run(project=project, kind=TrainingRun.Kind.REWARD, parent_run=parent, enqueue=False)
    assert services.start_run(run_id=child.pk)
    assert services.beat(run_id=child.pk) is False
    services.request_cancel(run=parent)
    assert services.beat(run_id=child.pk) is True


def test_generation_stops_between_decode_steps(tiny_llama_dir):
    from training.pipeline.callbacks import TrainingCancelled
    from training.pipeline.generate import sample_ids
    from training.pipeline.models import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm(tiny_llama_dir), load_tokenizer(tiny_llama_dir)
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 5

    started = time.monotonic()
    with pytest.raises(TrainingCancelled):
        sample_ids(model, tokenizer, [[1, 2, 3]], max_new_tokens=100_000, temperature=1.0, should_stop=should_stop)
    assert time.monotonic() - started < 10 and len(polls) == 6
