"""One worker serves every project: the order is fair between projects, and a project's queue has a limit.

The real worker loop (django-tasks-db's `Worker`, what `manage.py db_worker` runs) takes the jobs from the
database, and the runs are real publishing runs (a project with no prompts: each ends at once, succeeded).
"""

import pytest
from django_tasks_db.management.commands.db_worker import Worker

from feedback.models import Project
from tests.feedback.factories import ProjectFactory, make_member
from training import services
from training.models import ModelVersion, TrainingRun
from training.services.runs import RunQueueFull

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def default_policy(tmp_path):
    """An active default policy: publishing in a project without prompts names it and never loads its files."""
    return services.register_version(project=None, name="policy", kind=ModelVersion.Kind.POLICY, path=str(tmp_path),
                                     sha256="0" * 64, config={}, metrics={}, activate=True)


def drain_queue() -> None:
    """The worker, in batch mode: it takes ready jobs in its own order until none is left."""
    Worker(queue_names=["*"], interval=0, batch=True, backend_name="default", startup_delay=False, max_tasks=None,
           worker_id="fairness-test", excluded_queue_names=[]).run()


def publish(project: Project) -> TrainingRun:
    return services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={})


def claim_order(runs: list[TrainingRun]) -> list[int]:
    """The runs' ids in the order the worker claimed them (started_at)."""
    rows = TrainingRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("pk", "started_at", "state")
    assert all(state == TrainingRun.State.SUCCEEDED for _, _, state in rows), list(rows)
    return [pk for pk, _, _ in sorted(rows, key=lambda row: row[1])]


def test_one_run_of_another_project_goes_before_the_second_of_a_long_queue(default_policy, settings):
    settings.TRAINING_MAX_QUEUED_PER_PROJECT = 10
    alpha, beta, gamma = ProjectFactory(), ProjectFactory(), ProjectFactory()
    a = [publish(alpha) for _ in range(4)]  # alpha queues first, many runs
    b = [publish(beta)]
    c = [publish(gamma), publish(gamma)]
    drain_queue()
    order = claim_order(a + b + c)
    # Round-robin: each project's next run before any project's next-but-one; first come first served among equals.
    assert order == [a[0].pk, b[0].pk, c[0].pk, a[1].pk, c[1].pk, a[2].pk, a[3].pk]


def test_a_project_queuing_while_another_is_served_is_next(default_policy, settings):
    """Beta's run, queued after alpha's whole queue, is claimed right after alpha's first (which was running)."""
    alpha, beta = ProjectFactory(), ProjectFactory()
    a = [publish(alpha) for _ in range(3)]
    Worker(queue_names=["*"], interval=0, batch=True, backend_name="default", startup_delay=False, max_tasks=1,
           worker_id="fairness-test", excluded_queue_names=[]).run()  # alpha's first run, and only it
    b = publish(beta)
    drain_queue()
    assert claim_order([*a, b]) == [a[0].pk, b.pk, a[1].pk, a[2].pk]


def test_a_full_queue_refuses_a_run_naming_the_limit_and_frees_a_place_when_one_is_cancelled(
        default_policy, settings, client):
    settings.TRAINING_MAX_QUEUED_PER_PROJECT = 2
    alpha, beta = ProjectFactory(), ProjectFactory()
    first, _second = publish(alpha), publish(alpha)
    with pytest.raises(RunQueueFull) as refused:
        publish(alpha)
    assert refused.value.extra == {"limit": 2, "queued": 2}
    assert TrainingRun.objects.filter(project=alpha).count() == 2  # nothing half-written, no third row

    admin = make_member(alpha, "admin")
    client.force_login(admin)
    response = client.post("/api/v1/training-runs/", {"project": alpha.slug, "kind": "publish", "config": {}},
                           content_type="application/json")
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "run_queue_full" and response.json()["limit"] == 2
    assert "TRAINING_MAX_QUEUED_PER_PROJECT" in response.json()["detail"]

    publish(beta)  # another project's queue is its own
    services.request_cancel(run=first)
    publish(alpha)  # the cancelled run's place is free again
    assert TrainingRun.objects.filter(project=alpha, state=TrainingRun.State.QUEUED).count() == 2


def test_a_chain_step_and_an_in_process_run_are_not_queued(default_policy, settings):
    """Runs the worker never queues (a chain's steps, a command's in-process run) are not held to the limit."""
    settings.TRAINING_MAX_QUEUED_PER_PROJECT = 1
    alpha = ProjectFactory()
    parent = publish(alpha)
    services.start_training(project=alpha, kind=TrainingRun.Kind.PUBLISH, config={}, enqueue=False)
    services.start_training(project=alpha, kind=TrainingRun.Kind.PUBLISH, config={}, enqueue=False, parent_run=parent)
    with pytest.raises(RunQueueFull):
        publish(alpha)


def test_starts_racing_for_the_last_places_never_pass_the_limit(default_policy, settings):
    """Six admins start at once, four times over: the limit (2) holds on both databases (the project's row is
    locked inside the creating transaction); every start beyond it is refused, none fails otherwise."""
    import threading

    from django.db import connection

    settings.TRAINING_MAX_QUEUED_PER_PROJECT = 2
    for _ in range(4):
        project = ProjectFactory()
        barrier, outcomes = threading.Barrier(6), []

        def start():
            try:
                barrier.wait()
                publish(project)
                outcomes.append("queued")
            except RunQueueFull:
                outcomes.append("refused")
            except Exception as exc:  # reported below
                outcomes.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=start) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["queued"] * 2 + ["refused"] * 4, outcomes
        assert TrainingRun.objects.filter(project=project, state=TrainingRun.State.QUEUED).count() == 2


def test_a_full_queue_is_a_message_in_the_command_and_the_django_admin(default_policy, settings, admin_client):
    """Every door that starts a run says why it refused: the command's --queue and the Django admin's action give the
    rule's sentence, never a traceback or a 500, and write nothing."""
    from django.core.management import CommandError, call_command

    settings.TRAINING_MAX_QUEUED_PER_PROJECT = 1
    alpha = ProjectFactory()
    publish(alpha)
    with pytest.raises(CommandError, match="TRAINING_MAX_QUEUED_PER_PROJECT"):
        call_command("publish_samples", "--project", alpha.slug, "--queue")
    response = admin_client.post("/admin/feedback/project/", {"action": "publish_samples", "_selected_action": [alpha.pk]},
                                 follow=True)
    assert response.status_code == 200
    assert "TRAINING_MAX_QUEUED_PER_PROJECT" in response.content.decode()
    assert TrainingRun.objects.filter(project=alpha).count() == 1
