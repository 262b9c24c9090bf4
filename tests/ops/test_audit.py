import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.models import AuditEvent
from feedback import services as feedback_services
from tests.feedback.factories import make_member
from training import services as training_services
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_who_did_what_is_recorded_and_cannot_be_changed(project):
    admin = make_member(project, "admin")
    already = AuditEvent.objects.count()  # the project's creation and the membership, by the factory
    client = APIClient()
    client.force_authenticate(admin)
    client.post(f"/api/v1/projects/{project.slug}/import/", {"rows": [{"id": "a", "prompt": "p"}]}, format="json")
    feedback_services.create_snapshot(project=project, actor=admin)
    client.post("/api/v1/training-runs/", {"project": project.slug, "kind": "reward"}, format="json")
    version = training_services.register_version(project=project, name="p1", kind=ModelVersion.Kind.POLICY,
                                                 path="/nowhere", sha256="0" * 64, config={},
                                                 metrics={"eval_after/reward": 0.4})
    assert client.post(f"/api/v1/model-versions/{version.pk}/activate/", {}, format="json").status_code == 200
    run_id = client.get("/api/v1/training-runs/").json()["results"][0]["id"]
    assert client.post(f"/api/v1/training-runs/{run_id}/cancel/").status_code == 200
    events = list(AuditEvent.objects.order_by("id").values_list("event_type", "actor__username"))[already:]
    assert [e for e, _ in events] == ["prompts_imported", "preferences_exported", "run_started", "version_registered",
                                      "policy_activated", "run_cancelled"]
    activated = AuditEvent.objects.get(event_type=AuditEvent.Type.POLICY_ACTIVATED)
    assert activated.extra["to"] == version.pk and activated.extra["why"] == "by_hand"  # and from whom: none here
    assert all(actor == admin.username for e, actor in events if e != "version_registered")

    event = AuditEvent.objects.first()
    event.target = "tampered"
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()

    superuser = make_member(project, "admin", is_superuser=True)
    browser = Client()
    browser.force_login(superuser)
    page = browser.get("/admin/core/auditevent/")
    assert page.status_code == 200 and b"Prompts imported" in page.content
    assert browser.get(f"/admin/core/auditevent/{event.pk}/delete/").status_code == 403
    assert browser.get("/admin/core/auditevent/add/").status_code == 403
