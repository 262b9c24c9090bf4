import pytest
from django.test import Client

from tests.feedback.factories import ProjectFactory, make_member
from training import services
from training.models import TrainingRun
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(project):
    run = make_run(project=project, kind=TrainingRun.Kind.REWARD, config={"max_steps": 3})
    services.claim_run(run_id=run.pk)
    services.record_step(run_id=run.pk, step=1, metrics={"loss": 0.7, "accuracy": 0.5}, progress=0.33)
    services.record_step(run_id=run.pk, step=2, metrics={"loss": 0.6, "accuracy": 0.6}, progress=0.66)
    services.append_log(run_id=run.pk, line="step 2 <script>alert(1)</script>")
    return run


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def test_run_page_shows_progress_curves_and_log(project, run):
    page = client_for(make_member(project, "reviewer")).get(f"/training/runs/{run.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'hx-trigger="every 2s"' in html and "chart-4.6.1.umd.min.js" in html and "htmx-2.0.11.min.js" in html
    assert '"loss": [[1, 0.7], [2, 0.6]]' in html  # the curves' data, for Chart.js
    assert "&lt;script&gt;alert(1)" in html and "<script>alert(1)" not in html
    live = client_for(make_member(project, "reviewer")).get(f"/training/runs/{run.pk}/live/")
    assert live.status_code == 200
    services.finish_run(run_id=run.pk, state=TrainingRun.State.SUCCEEDED, summary={"eval/accuracy": 0.9})
    finished = client_for(make_member(project, "reviewer")).get(f"/training/runs/{run.pk}/live/")
    assert finished.status_code == 286 and b"eval/accuracy" in finished.content  # 286: htmx stops polling


def test_annotators_and_strangers_cannot_see_runs(project, run):
    assert client_for(make_member(project, "annotator")).get(f"/training/runs/{run.pk}/").status_code == 404
    other = ProjectFactory()
    assert client_for(make_member(other, "admin")).get(f"/training/runs/{run.pk}/").status_code == 404


def test_admin_starts_and_cancels_from_the_web(project):
    admin = client_for(make_member(project, "admin"))
    response = admin.post(f"/training/projects/{project.slug}/start/", {"kind": "retrain"})
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.RETRAIN)
    assert response.status_code == 302 and response["Location"] == f"/training/runs/{run.pk}/"
    admin.post(f"/training/runs/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.state == TrainingRun.State.CANCELLED
    registry = admin.get("/training/")
    assert registry.status_code == 200 and f"#{run.pk}".encode() in registry.content
    bad = admin.post(f"/training/projects/{project.slug}/start/", {"kind": "nonsense"}, follow=True)
    assert bad.status_code == 200 and TrainingRun.objects.count() == 1


def test_api_run_lifecycle(project):
    from rest_framework.test import APIClient

    admin = APIClient()
    admin.force_authenticate(make_member(project, "admin"))
    bad = admin.post("/api/v1/training-runs/", {"project": project.slug, "kind": "reward", "config": {"learning_rate": -1}}, format="json")
    assert bad.status_code == 400 and "learning_rate" in bad.json()["config"][0]
    created = admin.post("/api/v1/training-runs/", {"project": project.slug, "kind": "reward", "config": {"max_steps": 2}}, format="json")
    assert created.status_code == 201 and created.json()["config"]["max_steps"] == 2
    run_id = created.json()["id"]
    assert admin.get(f"/api/v1/training-runs/{run_id}/").json()["state"] == "queued"
    assert admin.post(f"/api/v1/training-runs/{run_id}/cancel/").json()["state"] == "cancelled"
    annotator = APIClient()
    annotator.force_authenticate(make_member(project, "annotator"))
    assert annotator.post("/api/v1/training-runs/", {"project": project.slug, "kind": "reward"}, format="json").status_code == 403
    assert annotator.get(f"/api/v1/training-runs/{run_id}/").status_code == 404


def test_settings_warnings_reach_the_run_log(project):
    from rest_framework.test import APIClient

    admin = APIClient()
    admin.force_authenticate(make_member(project, "admin"))
    response = admin.post("/api/v1/training-runs/", {"project": project.slug, "kind": "ppo", "config": {"cliprange": 0.5}},
                          format="json")
    assert response.status_code == 201
    assert "cliprange=0.5 is outside the usual 0.1–0.3" in response.json()["log_tail"]


def test_only_project_admins_start_or_cancel(project, run):
    reviewer = client_for(make_member(project, "reviewer"))
    assert reviewer.post(f"/training/projects/{project.slug}/start/", {"kind": "reward"}).status_code == 403
    assert reviewer.post(f"/training/runs/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert not run.cancel_requested and TrainingRun.objects.count() == 1
