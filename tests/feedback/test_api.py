import io
import json

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback import services
from feedback.models import Judgement, Project, Prompt
from tests.feedback.factories import ProjectFactory, UserFactory, make_member, make_tasks


def next_task(client, project):
    return client.post(f"/api/v1/projects/{project.pk}/next-task/")


@pytest.fixture
def tasks(project):
    return make_tasks(project, 2, k=3, texts={0: "alpha", 1: "beta", 2: "gamma"})


class TestNextTaskApi:
    def test_returns_anonymous_labelled_completions(self, annotator_client, project, tasks):
        response = next_task(annotator_client, project)
        assert response.status_code == 200
        body = response.json()
        assert body["task"] == tasks[0].pk
        assert body["prompt"] == "Question 0?"
        assert [c["label"] for c in body["completions"]] == ["a", "b", "c"]
        assert sorted(c["text"] for c in body["completions"]) == ["alpha", "beta", "gamma"]
        assert "model" not in json.dumps(body["completions"]) and "m0" not in response.content.decode()
        assert body["lease_expires_at"]

    def test_project_by_slug_and_204_when_nothing_left(self, annotator_client, project):
        assert annotator_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 204

    def test_other_projects_are_invisible(self, annotator_client):
        other = ProjectFactory()
        make_tasks(other, 1)
        assert annotator_client.post(f"/api/v1/projects/{other.pk}/next-task/").status_code == 404
        assert annotator_client.get(f"/api/v1/projects/{other.slug}/").status_code == 404
        ids = [p["id"] for p in annotator_client.get("/api/v1/projects/").json()["results"]]
        assert other.pk not in ids

    def test_anonymous_is_refused(self, api_client, project):
        assert next_task(api_client, project).status_code in (401, 403)

    def test_token_auth(self, project, annotator, tasks):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
        assert next_task(client, project).status_code == 200


class TestJudgementApi:
    def submit(self, client, task_id, body, key=None):
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        return client.post(f"/api/v1/tasks/{task_id}/judgements/", body, format="json", **headers)

    def test_submit_then_retry_with_same_key(self, annotator_client, project, tasks):
        task_id = next_task(annotator_client, project).json()["task"]
        body = {"ranking": [["a"], ["b", "c"]], "flags": ["all_bad"], "confidence": 2}
        first = self.submit(annotator_client, task_id, body, key="abc")
        assert first.status_code == 201, first.content
        assert first.json()["ranking"] == [["a"], ["b", "c"]]
        retry = self.submit(annotator_client, task_id, body, key="abc")
        assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
        assert Judgement.objects.count() == 1

    @pytest.mark.parametrize("body,field", [
        ({"ranking": [["a"], ["b"]]}, "ranking"),
        ({"ranking": [["a"], ["a"], ["b", "c"]]}, "ranking"),
        ({"ranking": [["a"], ["q"], ["b", "c"]]}, "ranking"),
        ({"ranking": [["a"], ["b"], ["c"]], "confidence": "high"}, "confidence"),
        ({"ranking": [["a"], ["b"], ["c"]], "confidence": 7}, "confidence"),
        ({"ranking": [["a"], ["b"], ["c"]], "flags": ["meh"]}, "flags"),
        ({"ranking": [["a"], ["b"], ["c"]], "flags": "unsafe"}, "flags"),
        ({}, "ranking"),
    ])
    def test_bad_bodies_get_400_naming_the_field(self, annotator_client, project, tasks, body, field):
        task_id = next_task(annotator_client, project).json()["task"]
        response = self.submit(annotator_client, task_id, body)
        assert response.status_code == 400, response.content
        assert field in response.json()
        assert not Judgement.objects.exists()

    def test_malformed_json_is_400(self, annotator_client, project, tasks):
        task_id = next_task(annotator_client, project).json()["task"]
        response = annotator_client.post(f"/api/v1/tasks/{task_id}/judgements/", "{nope", content_type="application/json")
        assert response.status_code == 400

    def test_oversized_body_is_refused(self, annotator_client, project, tasks):
        task_id = next_task(annotator_client, project).json()["task"]
        huge = json.dumps({"ranking": [["a"], ["b"], ["c"]], "comment": "x" * (2 * 1024 * 1024)})
        response = annotator_client.post(f"/api/v1/tasks/{task_id}/judgements/", huge, content_type="application/json")
        assert response.status_code in (400, 413)
        assert not Judgement.objects.exists()

    def test_not_leased_task_is_403(self, annotator_client, project, tasks):
        response = self.submit(annotator_client, tasks[1].pk, {"ranking": [["a"], ["b"], ["c"]]})
        assert response.status_code == 403
        assert response.json()["detail"] == services.NOT_LEASEHOLDER

    def test_task_of_another_project_is_404(self, annotator_client):
        other = ProjectFactory()
        task = make_tasks(other, 1)[0]
        assert self.submit(annotator_client, task.pk, {"ranking": [["a"], ["b"]]}).status_code == 404

    def test_skip(self, annotator_client, project, tasks):
        task_id = next_task(annotator_client, project).json()["task"]
        assert annotator_client.post(f"/api/v1/tasks/{task_id}/skip/").status_code == 204
        assert next_task(annotator_client, project).json()["task"] != task_id

    def test_my_judgements_only(self, annotator_client, project, tasks):
        other = make_member(project)
        held = services.next_task(project=project, annotator=other)
        services.submit_judgement(task=held.task, annotator=other, ranking=[["a"], ["b"], ["c"]])
        assert annotator_client.get("/api/v1/judgements/").json()["results"] == []


class TestProjectsApi:
    def test_admin_creates_project(self, project_admin):
        client = APIClient()
        client.force_authenticate(project_admin)
        response = client.post("/api/v1/projects/", {"slug": "new-one", "name": "New", "completions_per_task": 3, "overlap": 5}, format="json")
        assert response.status_code == 201, response.content
        assert Project.objects.get(slug="new-one").overlap == 5

    def test_bad_project_fields(self, project_admin):
        client = APIClient()
        client.force_authenticate(project_admin)
        response = client.post("/api/v1/projects/", {"slug": "x y", "completions_per_task": 9}, format="json")
        assert response.status_code == 400
        assert {"slug", "completions_per_task", "name"} <= set(response.json())

    def test_annotator_cannot_create(self, annotator_client):
        assert annotator_client.post("/api/v1/projects/", {"slug": "nope", "name": "n"}, format="json").status_code == 403
        assert not Project.objects.filter(slug="nope").exists()

    def test_stats_for_admins_not_annotators(self, annotator_client, project_admin, project, tasks):
        assert annotator_client.get(f"/api/v1/projects/{project.pk}/stats/").status_code == 403
        client = APIClient()
        client.force_authenticate(project_admin)
        stats = client.get(f"/api/v1/projects/{project.slug}/stats/").json()
        assert stats["tasks_total"] == 2 and stats["judgements_needed"] == 4


class TestImportApi:
    def client_for(self, user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    def test_import_rows(self, project_admin, project):
        rows = [{"id": "q1", "prompt": [{"role": "user", "content": "hi"}], "completions": [{"text": "a", "model": "x"}, {"text": "b", "model": "y"}]},
                {"id": "q2", "prompt": "plain"}]
        response = self.client_for(project_admin).post(f"/api/v1/projects/{project.pk}/import/", {"rows": rows}, format="json")
        assert response.status_code == 201, response.content
        assert response.json() == {"prompts_created": 2, "completions_created": 2, "tasks_created": 1, "rows_skipped": 0}

    def test_import_file_and_bad_line(self, project_admin, project):
        good = json.dumps({"id": "q1", "prompt": "p"})
        bad = json.dumps({"id": "q2", "prompt": "p2", "completions": [{"text": "only one"}]})
        upload = io.BytesIO(f"{good}\n{bad}\n".encode())
        upload.name = "rows.jsonl"
        response = self.client_for(project_admin).post(f"/api/v1/projects/{project.pk}/import/", {"file": upload}, format="multipart")
        assert response.status_code == 400
        assert "line 2: field 'completions'" in response.json()["file"][0]
        assert not Prompt.objects.exists()

    def test_annotator_cannot_import(self, annotator_client, project):
        response = annotator_client.post(f"/api/v1/projects/{project.pk}/import/", {"rows": [{"prompt": "x"}]}, format="json")
        assert response.status_code == 403
        assert not Prompt.objects.exists()


class TestSchema:
    def test_openapi_schema_and_docs(self, annotator_client):
        schema = annotator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert schema.status_code == 200
        assert "/api/v1/projects/{project_ref}/next-task/" in schema.json()["paths"]
        docs = annotator_client.get("/api/docs/")
        assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


def test_token_login_is_throttled(db, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    # DRF reads the rates once at import; set the login rate the way settings would.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "login": "3/min"})
    cache.clear()
    UserFactory(username="victim")
    client = APIClient()
    codes = [client.post("/api/v1/auth/token/", {"username": "victim", "password": f"guess{i}"}).status_code for i in range(5)]
    assert codes[:3] == [400, 400, 400]
    assert codes[3:] == [429, 429]


@pytest.mark.django_db
def test_brute_force_login_page_locks_out(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    user = UserFactory(username="target")
    for i in range(3):
        client.post("/accounts/login/", {"username": "target", "password": f"wrong{i}"})
    # Locked out: even the right password is refused now.
    response = client.post("/accounts/login/", {"username": "target", "password": "pass-word-123"})
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert user.check_password("pass-word-123")
