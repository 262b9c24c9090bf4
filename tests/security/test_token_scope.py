"""A key a project admin minted for someone else opens only the projects that admin administered (issue 30, 1).

The attack: alpha's admin mints the key of a user who is only in alpha (allowed: they administer all of the
user's projects) and keeps a copy. Later beta's admin makes the same user an admin of beta. With the copy,
beta must stay closed (404, as for a non-member) through every door that adds a membership, while the user
keeps working in alpha with the same key, and in beta with their session or a key of their own.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.models import AuditEvent, TokenScope
from feedback import services
from feedback.models import Membership, Project
from tests.feedback.factories import ProjectFactory, UserFactory, make_member, make_tasks
from tests.security.tenant_walk import (
    SECRET_SLUG, build_foreign_project, changed_tables, fill_route, fingerprint, foreign_values, leaked, walk_routes,
    write_body,
)

pytestmark = pytest.mark.django_db
PASSWORD = "pass-word-123"  # tests.feedback.factories.UserFactory's


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def mint_on_members_page(*, admin, project, user) -> str:
    """alpha's admin presses "Create token" for `user` and reads the key off the page."""
    membership = Membership.objects.get(project=project, user=user)
    page = page_client(admin).post(f"/p/{project.slug}/members/{membership.pk}/token/", {"action": "create"})
    key = Token.objects.get(user=user).key
    assert page.status_code == 200 and key in page.content.decode()
    return key


@pytest.fixture
def alpha(db):
    project = ProjectFactory(slug="alpha")
    make_tasks(project, 2)
    return project


@pytest.fixture
def beta(db):
    project = ProjectFactory(slug="beta")
    make_tasks(project, 2)
    return project


@pytest.fixture
def people(alpha, beta):
    return {"alpha_admin": make_member(alpha, "admin"), "beta_admin": make_member(beta, "admin"),
            "user": make_member(alpha, "admin"), "root": UserFactory(is_superuser=True, is_staff=True)}


# --- every door that adds a membership --------------------------------------------------------------------------

def via_members_page(people, beta):
    response = page_client(people["beta_admin"]).post(
        f"/p/{beta.slug}/members/", {"username": people["user"].username, "role": "admin"})
    assert response.status_code == 302
    return beta


def via_command(people, beta):
    out, err = io.StringIO(), io.StringIO()
    call_command("add_member", people["user"].username, "--project", beta.slug, "--role", "admin", stdout=out, stderr=err)
    assert "does not open beta" in err.getvalue()  # the operator is told the printed key is scoped elsewhere
    return beta


def via_django_admin(people, beta):
    response = page_client(people["root"]).post("/admin/feedback/membership/add/", {
        "project": beta.pk, "user": people["user"].pk, "role": "admin"})
    assert response.status_code == 302, response.content.decode()[:2000]
    return beta


def via_project_inline(people, beta):
    """The Django admin's project page, members formset: one more row."""
    client = page_client(people["root"])
    rows = list(beta.memberships.all())
    data = {"name": beta.name, "instructions": beta.instructions, "completions_per_task": beta.completions_per_task,
            "overlap": beta.overlap, "lease_seconds": beta.lease_seconds, "gold_rate": beta.gold_rate,
            "agreement_threshold": beta.agreement_threshold, "max_overlap": "",
            "memberships-TOTAL_FORMS": len(rows) + 1, "memberships-INITIAL_FORMS": len(rows),
            "memberships-MIN_NUM_FORMS": 0, "memberships-MAX_NUM_FORMS": 1000}
    for i, row in enumerate(rows):
        data |= {f"memberships-{i}-id": row.pk, f"memberships-{i}-project": beta.pk,
                 f"memberships-{i}-user": row.user_id, f"memberships-{i}-role": row.role}
    i = len(rows)
    data |= {f"memberships-{i}-project": beta.pk, f"memberships-{i}-user": people["user"].pk,
             f"memberships-{i}-role": "admin"}
    response = client.post(f"/admin/feedback/project/{beta.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    return beta


def via_api_project_creation(people, beta):
    """The user creates a project through the API (signed in): they become its admin."""
    client = APIClient()
    client.force_login(people["user"])
    response = client.post("/api/v1/projects/", {"slug": "gamma", "name": "Gamma"}, format="json")
    assert response.status_code == 201, response.content
    project = Project.objects.get(slug="gamma")
    make_tasks(project, 2)
    return project


DOORS = [via_members_page, via_command, via_django_admin, via_project_inline, via_api_project_creation]


@pytest.mark.parametrize("door", DOORS, ids=[d.__name__ for d in DOORS])
def test_alpha_admins_copy_of_the_key_never_opens_a_project_the_user_joins_later(door, alpha, beta, people):
    user = people["user"]
    key = mint_on_members_page(admin=people["alpha_admin"], project=alpha, user=user)
    copy = key_client(key)
    assert copy.get("/api/v1/projects/alpha/").status_code == 200

    joined = door(people, beta)
    assert Membership.objects.get(project=joined, user=user).role == "admin"
    assert Token.objects.get(user=user).key == key  # the same key: adding a member neither rotates nor widens it

    for url in (f"/api/v1/projects/{joined.slug}/", f"/api/v1/projects/{joined.pk}/",
                f"/api/v1/projects/{joined.slug}/stats/", f"/api/v1/projects/{joined.slug}/export/?format=jsonl"):
        assert copy.get(url).status_code == 404, url
    assert copy.post(f"/api/v1/projects/{joined.slug}/next-task/").status_code == 404
    task = joined.tasks.first()
    assert copy.post(f"/api/v1/tasks/{task.pk}/skip/").status_code == 404
    assert [p["slug"] for p in copy.get("/api/v1/projects/").json()["results"]] == ["alpha"]
    assert copy.post("/api/v1/projects/", {"slug": "delta", "name": "D"}, format="json").status_code == 403

    # The user keeps working in alpha with the same key, and in the new project with their session.
    assert copy.get("/api/v1/projects/alpha/stats/").status_code == 200
    assert copy.get("/api/v1/projects/alpha/export/?format=jsonl").status_code == 200
    assert copy.post("/api/v1/projects/alpha/next-task/").status_code in (200, 204)
    session = APIClient()
    session.force_login(user)
    assert session.get(f"/api/v1/projects/{joined.slug}/stats/").status_code == 200


def test_the_owner_signing_in_replaces_a_key_someone_else_minted(alpha, beta, people):
    """POST /api/v1/auth/token/ with the password: a scoped key is replaced by the owner's own (the admin's copy
    stops working); asking again returns that same key."""
    user = people["user"]
    copy = mint_on_members_page(admin=people["alpha_admin"], project=alpha, user=user)
    via_members_page(people, beta)
    own = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}).json()["token"]
    assert own != copy
    assert key_client(copy).get("/api/v1/projects/alpha/").status_code == 401
    assert key_client(own).get("/api/v1/projects/beta/stats/").status_code == 200
    again = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}).json()["token"]
    assert again == own


def test_keys_made_by_a_superuser_the_operator_or_the_owner_have_no_scope(alpha, beta, people):
    user = people["user"]
    for make in (
        lambda: services.create_token(actor=people["root"], user=user, project=alpha),
        lambda: call_command("add_member", user.username, "--project", "alpha", "--role", "admin", "--new-token",
                             stdout=io.StringIO()),
    ):
        make()
        key = Token.objects.get(user=user).key
        assert not TokenScope.objects.filter(token_id=key).exists()
    services.add_member(project=beta, username=user.username, role="annotator", issue_token=False)
    assert key_client(Token.objects.get(user=user).key).get("/api/v1/projects/beta/").status_code == 200


def test_a_minted_key_works_where_its_minter_was_admin_at_minting(alpha, beta, people):
    """Scope = the minter's admin projects when it was minted: joining one of those later opens it; the minter
    losing admin rights later does not take the user's key away."""
    both = make_member(alpha, "admin")
    services.add_member(project=beta, username=both.username, role="admin")
    key = mint_on_members_page(admin=both, project=alpha, user=people["user"])
    assert set(TokenScope.objects.get(token_id=key).projects.values_list("slug", flat=True)) == {"alpha", "beta"}
    services.add_member(project=beta, username=people["user"].username, role="reviewer")
    assert key_client(key).get("/api/v1/projects/beta/stats/").status_code == 200
    audit = AuditEvent.objects.filter(event_type="token_created", target=f"user:{people['user'].pk}").latest("pk")
    assert audit.extra["scope"] == sorted([alpha.pk, beta.pk]) and key not in str(audit.extra)


def test_the_members_page_says_whose_key_it_is_and_where_it_works(alpha, beta, people):
    user = people["user"]
    membership = Membership.objects.get(project=alpha, user=user)
    shown = page_client(people["alpha_admin"]).post(f"/p/alpha/members/{membership.pk}/token/", {"action": "create"})
    told = shown.content.decode()
    told = told[told.index('id="new-token-scope"'):][:300]
    assert "works only in alpha" in told and "joins later stay closed" in told
    root_made = page_client(people["root"]).post(f"/p/alpha/members/{membership.pk}/token/", {"action": "create"})
    assert f"{user.username}'s own key" in root_made.content.decode().replace("&#x27;", "'")
    mint_on_members_page(admin=people["alpha_admin"], project=alpha, user=user)
    via_members_page(people, beta)
    html = page_client(people["beta_admin"]).get("/p/beta/members/").content.decode()
    row = html[html.index(f'id="token-scope-{user.username}"'):][:400]
    # beta's admin is not in alpha: told the key works elsewhere, not where (no slugs of projects they cannot see)
    assert f"made by {people['alpha_admin'].username}" in row and "1 other project" in row and "alpha" not in row
    html = page_client(people["alpha_admin"]).get("/p/alpha/members/").content.decode()
    assert "works only in alpha" in html[html.index(f'id="token-scope-{user.username}"'):][:400]


def test_a_scoped_key_walks_every_api_route_of_a_project_its_owner_administers_and_gets_nothing(
        alpha, people, tmp_path):
    """Every API route × method, with the foreign project's ids in the URL and the body: refused, nothing shown,
    nothing changed, although the key's owner is an admin there."""
    foreign = build_foreign_project(tmp_path)
    user = people["user"]
    key = mint_on_members_page(admin=people["alpha_admin"], project=alpha, user=user)
    services.add_member(project=foreign.project, username=user.username, role="admin", issue_token=False)
    held = services.next_task(project=foreign.project, annotator=user)  # the user's own judgement there
    services.submit_judgement(task=held.task, annotator=user, ranking=[["a"], ["b"]])
    client, values, body = key_client(key), foreign_values(foreign), write_body(foreign)
    problems, walked = [], 0
    for route, _ in walk_routes():
        if not route.startswith("/api/v1/") or "<" not in route:
            continue
        for url in fill_route(route, values):
            for method in ("get", "post", "put", "patch", "delete"):
                before = fingerprint()
                response = getattr(client, method)(url, body, format="json") if method != "get" else client.get(url)
                walked += 1
                if response.status_code not in (403, 404, 405):
                    problems.append(f"{method.upper()} {url}: {response.status_code}")
                if leaked(response):
                    problems.append(f"{method.upper()} {url}: shows {leaked(response)}")
                if changed := changed_tables(before, fingerprint()):
                    problems.append(f"{method.upper()} {url}: changed {changed}")
    assert walked > 50 and not problems, "\n".join(problems)
    assert SECRET_SLUG not in client.get("/api/v1/projects/").content.decode()
    assert client.get("/api/v1/judgements/").json()["count"] == 0  # their judgement in it is not listed either
    session = APIClient()
    session.force_login(user)
    assert session.get("/api/v1/judgements/").json()["count"] == 1


def test_the_migration_scopes_keys_project_admins_minted_before_scopes_existed(alpha, beta, people):
    """Deployments upgrade with keys already minted the old way: those a project admin made (the audit trail
    says who) are scoped to that admin's projects; keys their owners or a superuser made stay unscoped."""
    import importlib

    from django.apps import apps

    from core.audit import record_audit

    migration = importlib.import_module("core.migrations.0005_token_scope_and_role_changed")
    minted_by_admin, made_by_root, own = people["user"], make_member(alpha, "reviewer"), make_member(alpha, "annotator")
    for owner, actor in ((minted_by_admin, people["alpha_admin"]), (made_by_root, people["root"]), (own, None)):
        Token.objects.create(user=owner)
        if actor is not None:
            record_audit(actor=actor, event_type=AuditEvent.Type.TOKEN_CREATED, project=alpha,
                         target=f"user:{owner.pk}", extra={"username": owner.username, "replaced": False})
    services.add_member(project=beta, username=minted_by_admin.username, role="admin", issue_token=False)

    migration.scope_tokens_minted_by_project_admins(apps, None)

    assert list(TokenScope.objects.values_list("token__user", flat=True)) == [minted_by_admin.pk]
    assert key_client(minted_by_admin.auth_token.key).get("/api/v1/projects/beta/").status_code == 404
    assert key_client(minted_by_admin.auth_token.key).get("/api/v1/projects/alpha/").status_code == 200
