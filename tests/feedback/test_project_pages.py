"""The project admin's pages through Django's test client: every page × role, forms, uploads, members, tokens."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from core.models import AuditEvent
from feedback.models import Membership, Project, Prompt
from tests.feedback.factories import ProjectFactory, UserFactory, make_member

pytestmark = pytest.mark.django_db

GOOD_ROWS = [
    {"id": "q1", "prompt": "What is 2+2?", "completions": [{"text": "4", "model": "m1"}, {"text": "5", "model": "m2"}]},
    {"id": "q2", "prompt": "Name a colour."},
]


def jsonl(rows) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode() + b"\n"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def people(project):
    return {role: make_member(project, role) for role in ("admin", "reviewer", "annotator")} | {
        "outsider": make_member(ProjectFactory(), "admin")}


def admin_pages(project, membership_id):
    """(method, url) of every page that needs the admin role in `project`."""
    return [
        ("get", reverse("feedback:project-settings", args=[project.slug])),
        ("post", reverse("feedback:project-settings", args=[project.slug])),
        ("get", reverse("feedback:project-import", args=[project.slug])),
        ("post", reverse("feedback:project-import", args=[project.slug])),
        ("get", reverse("feedback:members", args=[project.slug])),
        ("post", reverse("feedback:members", args=[project.slug])),
        ("post", reverse("feedback:member-role", args=[project.slug, membership_id])),
        ("post", reverse("feedback:member-remove", args=[project.slug, membership_id])),
        ("post", reverse("feedback:member-token", args=[project.slug, membership_id])),
    ]


@pytest.mark.parametrize("role, status", [("reviewer", 403), ("annotator", 403), ("outsider", 404)])
def test_admin_pages_refuse_other_roles(project, people, role, status):
    target = Membership.objects.get(project=project, user=people["annotator"])
    client = client_for(people[role])
    for method, url in admin_pages(project, target.pk):
        response = getattr(client, method)(url, {"role": "admin", "username": people[role].username})
        assert response.status_code == status, (method, url)
        assert f'id="error-{status}"' in response.content.decode()  # the styled page
    assert Membership.objects.get(pk=target.pk).role == "annotator"  # nothing changed
    assert Token.objects.count() == 0


def test_anonymous_is_sent_to_login(project):
    response = Client().get(reverse("feedback:members", args=[project.slug]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_missing_project_is_the_same_404(people):
    response = client_for(people["admin"]).get(reverse("feedback:members", args=["no-such-project"]))
    assert response.status_code == 404


def test_admin_sees_every_page_and_the_links(project, people):
    client = client_for(people["admin"])
    for name in ("project-settings", "project-import", "members"):
        assert client.get(reverse(f"feedback:{name}", args=[project.slug])).status_code == 200
    page = client.get(reverse("feedback:project-detail", args=[project.slug])).content.decode()
    for name in ("project-settings", "project-import", "members", "dashboard", "review"):
        assert reverse(f"feedback:{name}", args=[project.slug]) in page
    assert reverse("feedback:project-create") in page


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_nobody_sees_a_link_they_cannot_use(project, people, role):
    user = people[role]
    Membership.objects.filter(user=user).exclude(project=project).delete()
    page = client_for(user).get(reverse("feedback:project-detail", args=[project.slug])).content.decode()
    for name in ("project-settings", "project-import", "members"):
        assert reverse(f"feedback:{name}", args=[project.slug]) not in page
    assert reverse("feedback:project-create") not in page
    assert (reverse("feedback:dashboard", args=[project.slug]) in page) == (role == "reviewer")
    assert reverse("api-docs") in page


# --- create and edit ----------------------------------------------------------------------------------------

SETTINGS = {"name": "Fresh", "instructions": "Rank them.", "completions_per_task": 3, "overlap": 2,
            "max_overlap": "", "agreement_threshold": 0.7, "lease_seconds": 300, "gold_rate": 0.1}


def test_project_admin_creates_a_project_and_becomes_its_admin(people):
    response = client_for(people["admin"]).post(reverse("feedback:project-create"), {"slug": "fresh", **SETTINGS})
    assert response.status_code == 302
    project = Project.objects.get(slug="fresh")
    assert (project.completions_per_task, project.overlap, project.gold_rate) == (3, 2, 0.1)
    assert project.role_of(people["admin"]) == "admin"
    assert AuditEvent.objects.filter(event_type="project_created", project=project).exists()


@pytest.mark.parametrize("role", ["reviewer", "annotator"])
def test_only_admins_and_superusers_create(project, people, role):
    user = people[role]
    client = client_for(user)
    assert client.get(reverse("feedback:project-create")).status_code == 403
    assert client.post(reverse("feedback:project-create"), {"slug": "nope", **SETTINGS}).status_code == 403
    assert not Project.objects.filter(slug="nope").exists()
    superuser = UserFactory(is_superuser=True)
    assert client_for(superuser).get(reverse("feedback:project-create")).status_code == 200


def test_create_form_shows_the_field_error(people):
    before = Project.objects.count()
    response = client_for(people["admin"]).post(reverse("feedback:project-create"),
                                                 {"slug": "bad", **SETTINGS, "completions_per_task": 7})
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 4." in response.content.decode()
    assert "K: completions shown side by side" in response.content.decode()  # help text
    assert Project.objects.count() == before


def test_admin_edits_settings(project, people):
    url = reverse("feedback:project-settings", args=[project.slug])
    response = client_for(people["admin"]).post(url, SETTINGS)
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.lease_seconds, project.overlap) == ("Fresh", 300, 2)
    assert AuditEvent.objects.filter(event_type="project_changed", project=project).exists()


@pytest.mark.parametrize("change, message", [
    ({"lease_seconds": 5}, "Ensure this value is greater than or equal to 30."),
    ({"max_overlap": 1, "overlap": 3}, "must be at least `overlap`"),
    ({"gold_rate": "lots"}, "Enter a number."),
])
def test_invalid_settings_change_nothing(project, people, change, message):
    before = Project.objects.filter(pk=project.pk).values().get()
    response = client_for(people["admin"]).post(reverse("feedback:project-settings", args=[project.slug]),
                                                 {**SETTINGS, **change})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Project.objects.filter(pk=project.pk).values().get() == before


# --- upload -------------------------------------------------------------------------------------------------

def upload(client, project, content: bytes, name="prompts.jsonl", **headers):
    return client.post(reverse("feedback:project-import", args=[project.slug]),
                       {"file": SimpleUploadedFile(name, content)}, headers=headers)


def test_upload_imports_and_shows_counts(project, people):
    client = client_for(people["admin"])
    page = upload(client, project, jsonl(GOOD_ROWS)).content.decode()
    assert 'id="prompts-created">2<' in page and 'id="tasks-created">1<' in page
    assert Prompt.objects.filter(project=project).count() == 2
    again = upload(client, project, jsonl(GOOD_ROWS), HX_Request="true").content.decode()
    assert again.startswith('<div id="import-result"')  # htmx gets the fragment only
    assert 'id="rows-skipped">2<' in again and Prompt.objects.filter(project=project).count() == 2


def test_upload_csv(project, people):
    content = b"id,prompt,completion_1,completion_2,model_1,model_2\nc1,Hello?,Hi,Hey,a,b\n"
    page = upload(client_for(people["admin"]), project, content, name="p.csv").content.decode()
    assert 'id="tasks-created">1<' in page


def test_bad_line_names_it_and_imports_nothing(project, people):
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], {"id": "q3", "prompt": "x", "completions": [{"text": "", "model": "m"}, {"text": "b"}]}]
    response = upload(client_for(people["admin"]), project, jsonl(rows))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was imported" in page
    assert "line 3: field &#x27;completions[0].text&#x27;" in page
    assert Prompt.objects.filter(project=project).count() == 0


def test_broken_json_and_unknown_format(project, people):
    client = client_for(people["admin"])
    page = upload(client, project, jsonl([GOOD_ROWS[0], "{not json"])).content.decode()
    assert "line 2" in page and Prompt.objects.count() == 0
    page = upload(client, project, b"whatever", name="prompts.txt").content.decode()
    assert "Choose the format" in page and Prompt.objects.count() == 0


# --- members ------------------------------------------------------------------------------------------------

def test_members_list_add_change_remove(project, people):
    client = client_for(people["admin"])
    url = reverse("feedback:members", args=[project.slug])
    page = client.get(url).content.decode()
    for role in ("admin", "reviewer", "annotator"):
        assert f'id="member-{people[role].username}"' in page
    newcomer = UserFactory()
    assert client.post(url, {"username": newcomer.username, "role": "reviewer"}).status_code == 302
    membership = Membership.objects.get(project=project, user=newcomer)
    assert membership.role == "reviewer"
    assert not Token.objects.filter(user=newcomer).exists()  # tokens are made on request only
    client.post(reverse("feedback:member-role", args=[project.slug, membership.pk]), {"role": "annotator"})
    assert Membership.objects.get(pk=membership.pk).role == "annotator"
    client.post(reverse("feedback:member-remove", args=[project.slug, membership.pk]))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(event_type="member_removed", project=project).exists()


@pytest.mark.parametrize("username, message", [("ghost", "No user is called"), (None, "is already a member")])
def test_add_member_errors(project, people, username, message):
    before = Membership.objects.count()
    response = client_for(people["admin"]).post(reverse("feedback:members", args=[project.slug]),
                                                 {"username": username or people["annotator"].username, "role": "admin"})
    assert response.status_code == 200 and message in response.content.decode()
    assert Membership.objects.count() == before
    assert not Membership.objects.filter(role="admin", user=people["annotator"]).exists()


def test_bad_role_changes_nothing(project, people):
    membership = Membership.objects.get(project=project, user=people["annotator"])
    client_for(people["admin"]).post(reverse("feedback:member-role", args=[project.slug, membership.pk]), {"role": "god"})
    assert Membership.objects.get(pk=membership.pk).role == "annotator"


def test_last_admin_stays(project, people):
    Membership.objects.filter(project=project, role="admin").exclude(user=people["admin"]).delete()
    membership = Membership.objects.get(project=project, user=people["admin"])
    client = client_for(people["admin"])
    client.post(reverse("feedback:member-role", args=[project.slug, membership.pk]), {"role": "annotator"})
    client.post(reverse("feedback:member-remove", args=[project.slug, membership.pk]))
    assert Membership.objects.get(pk=membership.pk).role == "admin"


def test_membership_of_another_project_is_404(project, people):
    other = Membership.objects.get(user=people["outsider"])
    response = client_for(people["admin"]).post(reverse("feedback:member-remove", args=[project.slug, other.pk]))
    assert response.status_code == 404 and Membership.objects.filter(pk=other.pk).exists()


def test_tokens_create_replace_revoke(project, people):
    client = client_for(people["admin"])
    membership = Membership.objects.get(project=project, user=people["annotator"])
    url = reverse("feedback:member-token", args=[project.slug, membership.pk])
    page = client.post(url, {"action": "create"}).content.decode()
    key = Token.objects.get(user=people["annotator"]).key
    assert key in page
    client.post(url, {"action": "create"})
    assert Token.objects.get(user=people["annotator"]).key != key  # replaced: the old key stops working
    client.post(url, {"action": "revoke"})
    assert not Token.objects.filter(user=people["annotator"]).exists()
    client.post(url, {"action": "revoke"})  # nothing left to revoke: not audited again
    audit = list(AuditEvent.objects.filter(project=project, target=f"user:{people['annotator'].pk}",
                                           event_type__startswith="token_").order_by("pk")
                 .values_list("event_type", "actor_id", "extra"))
    admin_id = people["admin"].pk
    assert [(kind, actor) for kind, actor, _ in audit] == [
        ("token_created", admin_id), ("token_created", admin_id), ("token_revoked", admin_id)]
    assert [extra.get("replaced") for _, _, extra in audit[:2]] == [False, True]
    assert key not in str(audit)  # the key itself is never written to the trail
    client.post(reverse("feedback:member-role", args=[project.slug, membership.pk]), {"role": "reviewer"})
    assert not Token.objects.filter(user=people["annotator"]).exists()  # a role change brings no token back


def test_no_token_for_a_member_of_other_projects(project, people):
    """A token opens every project of its user: an admin of this project only may not mint one for them."""
    user = people["annotator"]
    make_member_of = ProjectFactory()
    Membership.objects.create(project=make_member_of, user=user, role="admin")
    membership = Membership.objects.get(project=project, user=user)
    client = client_for(people["admin"])
    assert "Create token" not in client.get(reverse("feedback:members", args=[project.slug])).content.decode().split(
        f'id="member-{user.username}"')[1].split("</tr>")[0]
    response = client.post(reverse("feedback:member-token", args=[project.slug, membership.pk]), {"action": "create"})
    assert response.status_code == 403 and not Token.objects.filter(user=user).exists()


def test_admin_who_steps_down_lands_where_they_still_may_go(project, people):
    client = client_for(people["admin"])
    newcomer = UserFactory()
    client.post(reverse("feedback:members", args=[project.slug]), {"username": newcomer.username, "role": "admin"})
    mine = Membership.objects.get(project=project, user=people["admin"])
    response = client.post(reverse("feedback:member-role", args=[project.slug, mine.pk]), {"role": "annotator"})
    assert response.url == reverse("feedback:project-detail", args=[project.slug])
    assert client.get(reverse("feedback:members", args=[project.slug])).status_code == 403


def test_token_page_is_not_cached(project, people):
    membership = Membership.objects.get(project=project, user=people["annotator"])
    response = client_for(people["admin"]).post(reverse("feedback:member-token", args=[project.slug, membership.pk]))
    assert "no-store" in response["Cache-Control"]


def test_server_error_page_renders_without_context():
    from django.template.loader import render_to_string

    assert 'id="error-500"' in render_to_string("500.html")
