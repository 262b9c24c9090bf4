import pytest

from feedback import importing
from feedback import services as feedback_services
from feedback.models import ComparisonTask, Completion
from tests.feedback.factories import make_member
from training import execution, services
from training.models import ModelVersion, TrainingRun
from training.pipeline.models import manifest_sha256


@pytest.fixture
def tiny_policy(tiny_llama_dir):
    return services.register_version(
        project=None, name="tiny-policy", kind=ModelVersion.Kind.POLICY, path=str(tiny_llama_dir),
        sha256=manifest_sha256(tiny_llama_dir), config={}, metrics={}, activate=True,
    )


@pytest.mark.django_db
def test_publish_samples_become_tasks_served_to_annotators(project, tiny_policy):
    rows = [importing.clean_row({"id": f"open-{i}", "prompt": f"Tell me a fact about the number {i}."}, i + 1) for i in range(3)]
    feedback_services.import_prompts(project=project, rows=rows)
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH,
                                  config={"max_new_tokens": 8, "completions_per_prompt": 2, "temperature": 1.0})
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    run.refresh_from_db()
    assert run.summary["published_tasks"] == 3
    assert set(Completion.objects.values_list("model_version", flat=True)) == {tiny_policy.pk}
    assert Completion.objects.filter(generation__max_new_tokens=8).count() == 6
    person = make_member(project)
    held = feedback_services.next_task(project=project, annotator=person)
    assert held is not None and held.task.completions.count() == 2
    assert ComparisonTask.objects.filter(project=project).count() == 3
    # Publishing again finds no prompt waiting for completions.
    again = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={"max_new_tokens": 8})
    assert execution.execute(again.pk) == TrainingRun.State.SUCCEEDED
    assert TrainingRun.objects.get(pk=again.pk).summary["published_tasks"] == 0


@pytest.mark.django_db
def test_the_run_shows_progress_while_it_samples(project, tiny_policy, monkeypatch):
    rows = [importing.clean_row({"id": f"p-{i}", "prompt": f"Count to {i}."}, i + 1) for i in range(10)]
    feedback_services.import_prompts(project=project, rows=rows)
    run = services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH,
                                  config={"max_new_tokens": 4, "completions_per_prompt": 2})
    beat, seen = services.beat, []

    def beat_and_look(*, run_id, progress=None):  # the real heartbeat; then what the run page would read
        cancelled = beat(run_id=run_id, progress=progress)
        seen.append(TrainingRun.objects.get(pk=run_id).progress)
        return cancelled

    monkeypatch.setattr(services, "beat", beat_and_look)
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED
    # 20 samples in batches of 16: the bar stood at 16/20 before the last batch, then at the end.
    assert seen[-2:] == [pytest.approx(0.8), pytest.approx(1.0)]


@pytest.mark.django_db
def test_bad_publish_settings_are_refused(project):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={"completions_per_prompt": 9})
    assert "completions_per_prompt" in str(excinfo.value)
    with pytest.raises(ValidationError):
        services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, config={"no_such_setting": 1})
