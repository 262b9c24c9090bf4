"""The Django admin's training actions: starting runs on projects, and rolling a policy back."""

import pytest
from django.test import Client

from core.models import AuditEvent
from tests.feedback.factories import make_member
from training import selectors, services
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(project):
    client = Client()
    client.force_login(make_member(project, "admin", is_superuser=True, is_staff=True))
    return client


def test_project_actions_start_runs_through_the_service(project, superuser_client):
    page = superuser_client.get("/admin/feedback/project/")
    assert page.status_code == 200 and b"train_policy_dpo" in page.content and b"recompute_trust" in page.content
    response = superuser_client.post("/admin/feedback/project/", {"action": "train_reward_model",
                                                                  "_selected_action": [project.pk]})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.kind == TrainingRun.Kind.REWARD and run.config["learning_rate"] > 0  # settings validated and filled in
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.RUN_STARTED, target=f"run:{run.pk}").exists()


def test_rolling_back_to_the_default_policy_asks_for_the_project(project, superuser_client):
    default = services.register_version(project=None, name="default", kind=ModelVersion.Kind.POLICY, path="/d",
                                        sha256="0" * 64, config={}, metrics={}, activate=True)
    own = services.register_version(project=project, name="own", kind=ModelVersion.Kind.POLICY, path="/o",
                                    sha256="1" * 64, config={}, metrics={"eval_after/reward": 1.0}, activate=True)
    changelist = superuser_client.get("/admin/training/modelversion/")
    assert changelist.status_code == 200 and b'name="project"' in changelist.content
    without = superuser_client.post("/admin/training/modelversion/", {"action": "roll_back_to",
                                                                      "_selected_action": [default.pk]}, follow=True)
    assert without.status_code == 200 and b"Name the project whose policy this becomes" in without.content
    assert selectors.active_policy(project=project) == own
    response = superuser_client.post("/admin/training/modelversion/", {
        "action": "roll_back_to", "_selected_action": [default.pk], "project": project.pk}, follow=True)
    assert response.status_code == 200 and b"is now the active policy of" in response.content
    assert selectors.active_policy(project=project) == default
    rolled_back = AuditEvent.objects.filter(event_type=AuditEvent.Type.POLICY_ACTIVATED, project=project).latest("id")
    assert (rolled_back.extra["from"], rolled_back.extra["to"]) == (own.pk, default.pk)
