"""A run whose settings ask for 2 processes goes through the worker's path (`execution.execute`) under
`accelerate launch` (gloo on this CPU): its steps reach the run as they happen, the main process alone saves,
and exactly one version is registered. Settings name the launch in the run's JSON config (no model field)."""

from pathlib import Path

import pytest

from feedback import importing
from feedback import services as feedback_services
from feedback.exports import ExportFilters
from tests.feedback.factories import make_member
from training import execution, selectors, services
from training.models import ModelVersion, TrainingRun
from tests.training.factories import make_run

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
    run = make_run(project=judged_project, kind=TrainingRun.Kind.REWARD, snapshot=snapshot,
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
    assert run.config["processes"] == 2 and run.config["accelerate_config"] is None


@pytest.fixture
def ppo_ready_project(project, capital_rows, tiny_backbone, tiny_llama_dir):
    """Prompts, the tiny default policy and the tiny BERT registered as the project's reward model."""
    from training.pipeline.models import manifest_sha256

    rows = [importing.clean_row(r, i + 1) for i, r in enumerate(capital_rows)]
    feedback_services.import_prompts(project=project, rows=rows)
    services.register_version(project=None, name="tiny-default-policy", kind=ModelVersion.Kind.POLICY,
                              path=str(tiny_llama_dir), sha256=manifest_sha256(tiny_llama_dir), config={}, metrics={},
                              activate=True)
    snapshot = feedback_services.create_snapshot(project=project, filters=ExportFilters(test_fraction=0.5))
    services.register_version(project=project, name="tiny-reward", kind=ModelVersion.Kind.REWARD,
                              path=str(tiny_backbone), sha256=manifest_sha256(tiny_backbone), config={},
                              metrics={"eval/accuracy": 0.9, "eval/accuracy_low": 0.6, "eval/n_pairs": 10},
                              snapshot=snapshot, activate=True)
    return project


def test_a_ppo_run_on_two_processes_registers_one_policy(ppo_ready_project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project = ppo_ready_project
    run = services.start_training(project=project, kind=TrainingRun.Kind.PPO, enqueue=False, config={
        "processes": 2, "num_iterations": 1, "batch_size": 4, "mini_batch_size": 2, "max_new_tokens": 6,
        "use_lora": False, "learning_rate": 1e-3, "rollout_chunk": 2, "gate_samples_per_prompt": 2,
        # plumbing, not learning: the gate is opened (its verdicts have their own tests)
        "gate_margin": -1e6, "gate_min_prompts": 1, "kl_bound": 1e6})

    state = execution.execute(run.pk)

    run.refresh_from_db()
    assert state == TrainingRun.State.SUCCEEDED, run.error
    policies = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.POLICY)
    assert policies.count() == 1 and run.produced_version == policies.get()
    saved = Path(policies.get().path)
    assert saved.parent.name == "registry" and (saved / "value_head.safetensors").is_file()  # saved once, by rank 0
    assert [m["step"] for m in selectors.run_metrics(run=run)] == [1]
    assert run.summary["device/processes"] == 2 and run.summary["status"] == "completed"


@pytest.mark.parametrize("kind", [TrainingRun.Kind.RLOO, TrainingRun.Kind.GRPO])
def test_an_rloo_or_grpo_run_on_two_processes_registers_one_policy(ppo_ready_project, kind, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project = ppo_ready_project
    run = services.start_training(project=project, kind=kind, enqueue=False, config={
        "processes": 2, "max_steps": 2, "batch_size": 4, "num_generations": 2, "max_completion_length": 4,
        "use_lora": False, "learning_rate": 1e-3, "gate_samples_per_prompt": 2, "gate_bootstrap_resamples": 50,
        "gate_margin": -1e6, "gate_min_prompts": 1, "kl_bound": 1e6})  # plumbing, not learning: the gate is opened

    state = execution.execute(run.pk)

    run.refresh_from_db()
    assert state == TrainingRun.State.SUCCEEDED, run.error
    policies = ModelVersion.objects.filter(project=project, kind=ModelVersion.Kind.POLICY)
    assert policies.count() == 1 and run.produced_version == policies.get()  # the main process alone saved
    assert f"/{kind}-" in policies.get().path and Path(policies.get().path, "manifest.json").is_file()
    assert [m["step"] for m in selectors.run_metrics(run=run)] == [1, 2]  # TRL's logs, once, from the main process
    # The project's one reward model is the one the run optimised: the gate claims nothing ("unjudged") and the
    # policy is registered as a candidate for people to judge.
    assert run.summary["device/processes"] == 2 and run.summary["passes_gate"] and not run.summary["gate/passed"]
    assert run.summary["gate/judged"] is False and policies.get().status == ModelVersion.Status.CANDIDATE
    assert run.summary["gate/n_prompts"] >= 1  # the gate ran (once, on the main process) over the held-out prompts
    assert "on 2 processes (accelerate launch)" in run.log
