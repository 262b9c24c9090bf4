"""Per-step metrics leave TrainingRun.metrics for their own table without losing a logged step."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("training", "0002_preferencesnapshot_moves_to_feedback")]
AFTER = [("training", "0003_trainingrunmetric")]


@pytest.mark.django_db(transaction=True)
def test_logged_steps_are_copied_to_the_metrics_table():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    project = old.get_model("feedback", "Project").objects.create(slug="migrated", name="Migrated")
    run = old.get_model("training", "TrainingRun").objects.create(project_id=project.pk, kind="ppo", metrics=[
        {"step": 1, "loss": 0.5}, {"step": 1, "objective/kl": "nan"}, {"step": 2, "loss": 0.25}])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    rows = new.get_model("training", "TrainingRunMetric").objects.filter(run_id=run.pk).order_by("step")
    assert [(r.step, r.metrics) for r in rows] == [(1, {"loss": 0.5, "objective/kl": "nan"}), (2, {"loss": 0.25})]
