"""A run has a wall-time and a generated-token budget: past either it stops, ends failed with the limit named,
and registers nothing. Asserted by state (what was published, registered, recorded), never by timing."""

import pytest

from feedback import importing
from feedback import services as feedback_services
from feedback.models import ComparisonTask, Completion
from tests.training.test_worker import judged_project  # noqa: F401  (fixture)
from training import execution, services
from training.models import ModelVersion, TrainingRun, TrainingRunMetric
from training.pipeline.models import manifest_sha256

pytestmark = pytest.mark.django_db(transaction=True)

PROMPTS, K, MAX_NEW_TOKENS = 3, 2, 40


@pytest.fixture
def tiny_policy(tiny_llama_dir):
    return services.register_version(
        project=None, name="tiny-policy", kind=ModelVersion.Kind.POLICY, path=str(tiny_llama_dir),
        sha256=manifest_sha256(tiny_llama_dir), config={}, metrics={}, activate=True,
    )


def publish_run(project) -> TrainingRun:
    rows = [importing.clean_row({"id": f"q-{i}", "prompt": f"Say something about {i}."}, i + 1) for i in range(PROMPTS)]
    feedback_services.import_prompts(project=project, rows=rows)
    return services.start_training(project=project, kind=TrainingRun.Kind.PUBLISH, enqueue=False, config={
        "max_new_tokens": MAX_NEW_TOKENS, "completions_per_prompt": K, "temperature": 1.0})


def assert_nothing_came_of_it(run: TrainingRun, versions_before: int) -> None:
    assert not Completion.objects.exists() and not ComparisonTask.objects.exists()
    assert ModelVersion.objects.count() == versions_before and run.produced_version is None
    # It stopped inside the sampling, before its first step (publishing records step 1 once sampling is done).
    assert not TrainingRunMetric.objects.filter(run=run).exists()


def test_a_spent_token_budget_stops_the_run_after_one_decode_step(project, tiny_policy, settings):
    settings.TRAINING_RUN_MAX_GENERATED_TOKENS = 1
    versions = ModelVersion.objects.count()
    run = publish_run(project)
    assert execution.execute(run.pk) == TrainingRun.State.FAILED
    run.refresh_from_db()
    assert run.summary["stopped"] == "token_budget", run.log
    # One decode step of the one batch (a token for each of its PROMPTS × K rows), not the next.
    assert run.summary["generated_tokens"] == PROMPTS * K < PROMPTS * K * MAX_NEW_TOKENS
    assert "TRAINING_RUN_MAX_GENERATED_TOKENS" in run.error
    assert_nothing_came_of_it(run, versions)


def test_a_spent_time_budget_stops_the_run_before_it_generates(project, tiny_policy, settings):
    settings.TRAINING_RUN_MAX_SECONDS = 0
    versions = ModelVersion.objects.count()
    run = publish_run(project)
    assert execution.execute(run.pk) == TrainingRun.State.FAILED
    run.refresh_from_db()
    assert run.summary["stopped"] == "time_budget" and run.summary["generated_tokens"] == 0, run.log
    assert "TRAINING_RUN_MAX_SECONDS" in run.error
    assert_nothing_came_of_it(run, versions)


def test_a_run_within_its_budget_publishes_and_counts_nothing_against_it(project, tiny_policy, settings):
    settings.TRAINING_RUN_MAX_GENERATED_TOKENS = PROMPTS * K * MAX_NEW_TOKENS  # the most this run can generate
    run = publish_run(project)
    assert execution.execute(run.pk) == TrainingRun.State.SUCCEEDED, TrainingRun.objects.get(pk=run.pk).log
    assert ComparisonTask.objects.filter(project=project).exists()


def test_a_spent_time_budget_stops_training_steps_too(judged_project, tiny_backbone, settings):  # noqa: F811
    """Not only sampling: a reward model's trainer asks after every step, and stops after its first."""
    settings.TRAINING_RUN_MAX_SECONDS = 0
    versions = ModelVersion.objects.count()
    run = services.start_training(project=judged_project, kind=TrainingRun.Kind.REWARD, enqueue=False, config={
        "backbone": str(tiny_backbone), "max_steps": 50, "batch_size": 2, "logging_steps": 1, "max_length": 128})
    assert execution.execute(run.pk) == TrainingRun.State.FAILED
    run.refresh_from_db()
    assert run.summary["stopped"] == "time_budget", run.log
    assert ModelVersion.objects.count() == versions and run.produced_version is None
    assert TrainingRunMetric.objects.filter(run=run).count() < 50
