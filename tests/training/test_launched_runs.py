"""A run whose settings ask for 2 processes goes through the worker's path (`execution.execute`) under
`accelerate launch` (gloo on this CPU): its steps reach the run as they happen, the main process alone saves,
and exactly one version is registered. Settings name the launch in the run's JSON config (no model field)."""

import pytest

from feedback import importing
from feedback import services as feedback_services
from feedback.exports import ExportFilters
from tests.feedback.factories import make_member
from training import execution, selectors, services
from training.models import ModelVersion, TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.ml]


@pytest.fixture
def judged_project(project, capital_rows):
    rows = [importing.clean_row(r, i + 1) for i, r in enumerate(capital_rows)]
    feedback_services.import_prompts(project=project, rows=rows)
    for person in [make_member(project) for _ in range(project.overlap)]:
        while (held := feedback_services.next_task(project=project, annotator=person)) is not None:
            texts = dict(held.task.completions.values_list("id", "model_name"))
            order = sorted(held.label_map().items(), key=lambda item: texts[item[1]] != "answers")
            feedback_services.submit_judgement(task=held.task, annotator=person, ranking=[[label] for label, _ in order])
    return project


def test_a_reward_run_on_two_processes_registers_one_version(judged_project, tiny_backbone, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_THREADS", "2")
    snapshot = feedback_services.create_snapshot(project=judged_project, filters=ExportFilters(test_fraction=0.35))
    run = services.create_run(project=judged_project, kind=TrainingRun.Kind.REWARD, snapshot=snapshot, enqueue=False,
                              config={"backbone": str(tiny_backbone), "max_steps": 4, "batch_size": 4,
                                      "learning_rate": 1e-3, "logging_steps": 1, "max_length": 128, "processes": 2})
    assert run.config["processes"] == 2

    state = execution.execute(run.pk)

    run.refresh_from_db()
    assert state in {TrainingRun.State.SUCCEEDED, TrainingRun.State.FAILED}, run.error
    assert "accelerate launch exited" not in run.error
    versions = ModelVersion.objects.filter(project=judged_project)
    assert versions.count() == 1 and run.produced_version == versions.get()
    assert versions.get().kind == ModelVersion.Kind.REWARD and versions.get().metrics["eval/n_pairs"] > 0
    assert {m["step"] for m in selectors.run_metrics(run=run)} == {1, 2, 3, 4}  # followed live, from the main process
    assert run.summary["device/processes"] == 2 and run.summary["device/name"] == "cpu"
    assert "on 2 processes (accelerate launch)" in run.log
    assert not any((tiny_backbone.parent / "launch").iterdir())  # the job's scratch files are gone


def test_processes_and_accelerate_config_are_checked_by_name(project):
    from django.core.exceptions import ValidationError

    for bad in ({"processes": 0}, {"accelerate_config": "../../etc/passwd.yaml"}, {"accelerate_config": "zero3"}):
        with pytest.raises(ValidationError, match="processes|accelerate_config"):
            services.start_training(project=project, kind=TrainingRun.Kind.PPO, config=bad, enqueue=False)
    run = services.start_training(project=project, kind=TrainingRun.Kind.DPO, config={"processes": 2}, enqueue=False)
    assert run.config["processes"] == 2 and run.config["accelerate_config"] == ""
