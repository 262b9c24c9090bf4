import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.exceptions import Conflict
from feedback import services as feedback_services
from tests.feedback.factories import make_member, make_tasks
from training import selectors, services
from training.models import RetrainSchedule, TrainingRun
from tests.training.factories import make_run


def judge_all(project, people):
    for person in people:
        while (held := feedback_services.next_task(project=project, annotator=person)) is not None:
            ranking = [[label] for label in "abcd"[: len(held.label_order)]]
            feedback_services.submit_judgement(task=held.task, annotator=person, ranking=ranking)


class TestRunLifecycle:
    def test_create_enqueues_on_commit(self, project, django_capture_on_commit_callbacks):
        from django_tasks_db.models import DBTaskResult

        with django_capture_on_commit_callbacks(execute=True):
            run = services.start_training(project=project, kind=TrainingRun.Kind.REWARD, config={})
        assert run.state == TrainingRun.State.QUEUED
        job = DBTaskResult.objects.get()
        assert job.args_kwargs["args"] == [run.pk]

    def test_cancel_queued_and_running(self, project):
        queued = make_run(project=project, kind=TrainingRun.Kind.REWARD)
        assert services.request_cancel(run=queued).state == TrainingRun.State.CANCELLED
        running = make_run(project=project, kind=TrainingRun.Kind.REWARD)
        assert services.claim_run(run_id=running.pk)
        assert not services.claim_run(run_id=running.pk)  # a second worker cannot claim it
        assert services.request_cancel(run=running).cancel_requested
        assert services.beat(run_id=running.pk) is True
        services.finish_run(run_id=running.pk, state=TrainingRun.State.CANCELLED)
        with pytest.raises(Conflict):
            services.request_cancel(run=TrainingRun.objects.get(pk=running.pk))

    def test_stale_heartbeat_fails_the_run(self, project):
        run = make_run(project=project, kind=TrainingRun.Kind.REWARD)
        services.claim_run(run_id=run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=600))
        assert services.fail_stale_runs(stale_after_seconds=120) == 1
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED and "heartbeat" in run.error

    def test_metrics_keep_nan_as_text(self, project):
        run = make_run(project=project, kind=TrainingRun.Kind.PPO)
        services.claim_run(run_id=run.pk)
        services.record_step(run_id=run.pk, step=1, metrics={"objective/kl": float("nan"), "loss": 0.5}, progress=0.5)
        services.record_step(run_id=run.pk, step=1, metrics={"objective/reward": 1.5})  # merged into step 1
        services.record_step(run_id=run.pk, step=2, metrics={"loss": 0.25})
        run.refresh_from_db()
        assert selectors.run_metrics(run=run) == [{"step": 1, "objective/kl": "nan", "loss": 0.5, "objective/reward": 1.5},
                                                  {"step": 2, "loss": 0.25}]
        assert run.progress == 0.5


class TestRetrainIfDue:
    @pytest.fixture
    def scheduled(self, project):
        make_tasks(project, 4, k=2)
        judge_all(project, [make_member(project), make_member(project)])
        RetrainSchedule.objects.create(project=project, is_enabled=True, min_new_judgements=5, max_hours=24, min_agreement=0.0)
        return project

    def test_starts_once_then_waits_for_new_judgements(self, scheduled):
        runs = services.retrain_if_due(agreement_fn=lambda project: 1.0)
        assert [r.kind for r in runs] == [TrainingRun.Kind.RETRAIN]
        assert runs[0].config["trigger"]["new_judgements"] == 8
        TrainingRun.objects.update(state=TrainingRun.State.SUCCEEDED)
        assert services.retrain_if_due(agreement_fn=lambda project: 1.0) == []

    def test_a_scheduled_retrain_starts_through_the_one_way_in(self, scheduled, settings):
        """Audited like any start, and held to the project's queue limit: a full queue leaves the schedule where it
        was (due again next tick), other projects' schedules unharmed."""
        from core.models import AuditEvent

        settings.TRAINING_MAX_QUEUED_PER_PROJECT = 1
        blocker = services.start_training(project=scheduled, kind=TrainingRun.Kind.PUBLISH, config={})
        assert services.retrain_if_due(agreement_fn=lambda project: 1.0) == []
        assert RetrainSchedule.objects.get().last_judgement_id == 0
        services.request_cancel(run=blocker)
        [run] = services.retrain_if_due(agreement_fn=lambda project: 1.0)
        audit = AuditEvent.objects.get(event_type=AuditEvent.Type.RUN_STARTED, target=f"run:{run.pk}")
        assert audit.extra["kind"] == TrainingRun.Kind.RETRAIN and audit.actor is None

    def test_low_agreement_blocks(self, scheduled):
        RetrainSchedule.objects.update(min_agreement=0.5)
        assert services.retrain_if_due(agreement_fn=lambda project: 0.2) == []

    def test_hours_passed_with_few_judgements(self, scheduled):
        RetrainSchedule.objects.update(min_new_judgements=1000, last_triggered_at=timezone.now())
        assert services.retrain_if_due(agreement_fn=lambda project: 1.0) == []
        later = timezone.now() + timedelta(hours=25)
        assert len(services.retrain_if_due(now=later, agreement_fn=lambda project: 1.0)) == 1

    def test_a_stored_schedule_with_settings_out_of_range_starts_nothing_and_keeps_its_place(self, scheduled):
        """A schedule written before its settings had ranges (or by a raw update) is refused when it fires — no run,
        and its judgements still count as new once it is fixed — instead of failing inside the chain."""
        RetrainSchedule.objects.update(config={"reward": {"learning_rate": "inf"}})
        assert services.retrain_if_due(agreement_fn=lambda project: 1.0) == []
        assert not TrainingRun.objects.exists()
        RetrainSchedule.objects.update(config={"reward": {"learning_rate": 1e-4}})
        assert [r.kind for r in services.retrain_if_due(agreement_fn=lambda project: 1.0)] == [TrainingRun.Kind.RETRAIN]


@pytest.mark.parametrize("changes, field", [
    ({"min_new_judgements": 0}, "min_new_judgements"), ({"max_hours": "inf"}, "max_hours"),
    ({"max_hours": 0}, "max_hours"), ({"min_agreement": 1.5}, "min_agreement"), ({"min_agreement": "nan"}, "min_agreement"),
    ({"config": '{"ppo": {"max_steps": 1000000000000000}}'}, "config"), ({"config": '{"reward": {"learning_rate": "inf"}}'}, "config"),
])
def test_the_admin_refuses_a_schedule_out_of_range_naming_the_field(project, admin_client, changes, field):
    form = {"project": project.pk, "is_enabled": "on", "method": "ppo", "min_new_judgements": 500, "max_hours": 24,
            "min_agreement": 0.6, "last_judgement_id": 0, "config": "{}", **changes}
    response = admin_client.post("/admin/training/retrainschedule/add/", form)
    assert response.status_code == 200  # the form again, with its errors, not a redirect
    assert field in response.context["adminform"].form.errors
    assert not RetrainSchedule.objects.exists()
    assert admin_client.post("/admin/training/retrainschedule/add/", {**form, **{
        "min_new_judgements": 500, "max_hours": 24, "min_agreement": 0.6, "config": "{}"}}).status_code == 302
    assert RetrainSchedule.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_start_one_retrain(project):
    make_tasks(project, 3, k=2)
    judge_all(project, [make_member(project), make_member(project)])
    RetrainSchedule.objects.create(project=project, is_enabled=True, min_new_judgements=1, min_agreement=0.0)
    barrier = threading.Barrier(4)
    errors = []

    def call():
        try:
            barrier.wait()
            services.retrain_if_due(agreement_fn=lambda project: 1.0)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert TrainingRun.objects.filter(kind=TrainingRun.Kind.RETRAIN).count() == 1
