"""Tenants stay apart: members of one project (admin, reviewer or annotator there) neither read nor change
anything of another project, through any API endpoint, any page, or the Django admin (superusers only).

The walk enumerates the URL resolver and the admin registry, so new endpoints, pages and ModelAdmins are
covered without editing this file. Every request is followed by a fingerprint of the whole database.
"""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback import services
from feedback.models import Membership
from tests.feedback.factories import ProjectFactory, UserFactory, make_member, make_tasks
from tests.security.tenant_walk import (
    MISSING_ID, SECRET_SLUG, admin_urls, build_foreign_project, changed_tables, fill_route, fingerprint, foreign_values, leaked,
    walk_routes, write_body,
)
from training import services as training_services
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db
ROLES = ("admin", "reviewer", "annotator")
METHODS = ("get", "post", "put", "patch", "delete")
REFUSED = {403, 404, 405}


@pytest.fixture
def home(db):
    project = ProjectFactory(slug="home-tenant")
    make_tasks(project, 2)
    return project


@pytest.fixture
def foreign(db, tmp_path):
    return build_foreign_project(tmp_path)


@pytest.fixture(params=ROLES)
def intruder(request, home, foreign):
    return make_member(home, request.param)


def _call(client, method: str, url: str, body: dict, *, api: bool):
    if method == "get":
        return client.get(url)
    if api:
        return getattr(client, method)(url, body, format="json")
    if method == "post":
        return client.post(url, body)
    return getattr(client, method)(url)


def test_every_route_refuses_another_projects_member(intruder, foreign):
    """Each route × method, with the foreign project's ids/slugs in the URL and in the body."""
    values, body = foreign_values(foreign), write_body(foreign)
    api, page = APIClient(), Client()
    api.force_authenticate(intruder)
    problems, walked = [], 0
    for route, name in walk_routes():
        try:
            urls = fill_route(route, values)
        except KeyError as exc:
            pytest.fail(f"{route}: map URL parameter {exc} to a foreign value in tenant_walk.foreign_values")
        is_api = route.startswith("/api/")
        for url in urls:
            for method in METHODS:
                client = api if is_api else page
                if not is_api:
                    page.force_login(intruder)  # a logout route must not turn the rest of the walk anonymous
                before = fingerprint()
                response = _call(client, method, url, body, api=is_api)
                walked += 1
                if "<" in route and response.status_code not in REFUSED:
                    problems.append(f"{method.upper()} {url}: {response.status_code} (want 403/404/405)")
                if response.status_code >= 500 and name != "readyz":  # readyz: 503 while no worker runs
                    problems.append(f"{method.upper()} {url}: {response.status_code}")
                # Creating a project re-renders the form with what was typed (here the foreign slug, refused as
                # taken, as the API does: slugs are unique site-wide); echoing the caller's own input is no leak.
                echoes_input = name == "project-create" and method == "post"
                if leaked(response) and not echoes_input:
                    problems.append(f"{method.upper()} {url}: body shows {leaked(response)}")
                if changed := changed_tables(before, fingerprint()):
                    problems.append(f"{method.upper()} {url}: changed {changed}")
    assert walked > 100 and not problems, "\n".join(problems)


def test_list_filters_answer_foreign_and_missing_ids_alike(intruder, foreign):
    """`?project=` (and the other id filters) on every list endpoint: no existence oracle."""
    client = APIClient()
    client.force_authenticate(intruder)
    filters = {"project": [foreign.project.pk, foreign.project.slug], "task": [foreign.task.pk],
               "task__project": [foreign.project.pk]}
    lists = [route for route, _ in walk_routes() if route.startswith("/api/v1/") and "<" not in route]
    assert "/api/v1/model-versions/" in lists and "/api/v1/training-runs/" in lists
    for route in lists:
        for key, refs in filters.items():
            for ref in refs:
                missing_ref = MISSING_ID if isinstance(ref, int) else "no-such-project"
                seen, missing = client.get(route, {key: ref}), client.get(route, {key: missing_ref})
                assert (seen.status_code, seen.content) == (missing.status_code, missing.content), (route, key, ref)


def test_pages_answer_foreign_and_missing_projects_alike(intruder, foreign):
    client = Client()
    client.force_login(intruder)
    for route, _ in walk_routes():
        if "<slug:slug>" not in route:
            continue
        seen = client.get(fill_route(route, foreign_values(foreign))[0])
        missing = client.get(fill_route(route, {**foreign_values(foreign), "slug": ["no-such-project"]})[0])
        assert seen.status_code == missing.status_code and seen.status_code in REFUSED, route


# --- the Django admin: superusers only ------------------------------------------------------------------------


@pytest.fixture(params=[*ROLES, "staff"])
def admin_intruder(request, home, foreign):
    if request.param != "staff":
        return make_member(home, request.param)
    user = UserFactory(is_staff=True)  # staff-flagged, with every model permission, but not a superuser
    user.user_permissions.set(Permission.objects.all())
    return user


def test_django_admin_refuses_non_superusers(admin_intruder, foreign):
    client = Client()
    urls = admin_urls(foreign)
    problems = []
    for url in urls:
        for method in ("get", "post"):
            client.force_login(admin_intruder)
            before = fingerprint()
            data = {"action": "delete_selected", "_selected_action": [foreign.project.pk], "post": "yes",
                    "slug": "hijacked", "name": "x", "role": "admin", "user": admin_intruder.pk, "project": foreign.project.pk}
            response = client.get(url) if method == "get" else client.post(url, data)
            location = response.get("Location", "")
            if response.status_code != 302 or not location.startswith("/admin/login/"):
                problems.append(f"{method.upper()} {url}: {response.status_code} {location}")
            if leaked(response):
                problems.append(f"{method.upper()} {url}: body shows {leaked(response)}")
            if changed := changed_tables(before, fingerprint()):
                problems.append(f"{method.upper()} {url}: changed {changed}")
    assert len(urls) > 50 and not problems, "\n".join(problems)


def test_superusers_still_use_the_admin(foreign):
    """The positive control of the walk: the same URLs answer a superuser, who sees the foreign data."""
    client = Client()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    urls = admin_urls(foreign)
    for url in urls:
        assert client.get(url).status_code in {200, 302, 403}, url  # 403: append-only tables refuse add/delete
    assert leaked(client.get("/admin/feedback/prompt/"))
    # The foreign DPO round is walked (its own row, read-only), and its project shows to the superuser.
    assert f"/admin/training/dporound/{foreign.dpo_round.pk}/change/" in urls
    assert SECRET_SLUG in client.get(f"/admin/training/dporound/{foreign.dpo_round.pk}/change/").content.decode()


# --- roles take effect at once --------------------------------------------------------------------------------


def test_project_admins_are_not_staff_and_demotion_removes_everything(home):
    membership, token = services.add_member(project=home, username="ada", role="admin")
    user = membership.user
    user.refresh_from_db()
    assert not user.is_staff and not user.get_all_permissions()
    api, page = APIClient(), Client()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    page.force_login(user)
    assert api.get(f"/api/v1/projects/{home.pk}/stats/").status_code == 200
    assert page.get(f"/p/{home.slug}/dashboard/").status_code == 200

    make_member(home, "admin")  # a project keeps one admin: ada can be demoted once someone else is one
    services.add_member(project=home, username="ada", role="annotator")  # demoted: the same token and session
    assert api.get(f"/api/v1/projects/{home.pk}/stats/").status_code == 403
    assert api.post(f"/api/v1/projects/{home.pk}/import/", {"rows": [{"prompt": "x"}]}, format="json").status_code == 403
    assert api.get("/api/v1/model-versions/").status_code == 403
    assert page.get(f"/p/{home.slug}/dashboard/").status_code == 404
    assert list(user.groups.values_list("name", flat=True)) == ["Annotators"]

    services.remove_member(membership=Membership.objects.get(user=user, project=home))
    assert api.get(f"/api/v1/projects/{home.pk}/").status_code == 404
    assert page.get(f"/p/{home.slug}/").status_code == 404
    assert not user.groups.exists()


def test_migration_clears_staff_set_for_project_roles(home):
    legacy = UserFactory(is_staff=True)
    boss = UserFactory(is_staff=True, is_superuser=True)
    migration = importlib.import_module("feedback.migrations.0006_project_roles_are_not_staff")
    from django.apps import apps

    migration.clear_staff_of_non_superusers(apps, None)
    legacy.refresh_from_db()
    boss.refresh_from_db()
    assert not legacy.is_staff and boss.is_staff


# --- model versions and scoring: reviewers and admins ----------------------------------------------------------


@pytest.fixture
def home_reward(home, tmp_path):
    return ModelVersion.objects.create(project=home, name="reward-home", kind=ModelVersion.Kind.REWARD,
                                       path=str(tmp_path / "r"), sha256="a" * 64)


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_model_versions_and_score_need_reviewer(home, home_reward, foreign):
    annotator, reviewer = _api(make_member(home, "annotator")), _api(make_member(home, "reviewer"))
    score = f"/api/v1/model-versions/{home_reward.pk}/score/"
    for url in ("/api/v1/model-versions/", f"/api/v1/model-versions/{home_reward.pk}/"):
        assert annotator.get(url).status_code == 403, url
        assert reviewer.get(url).status_code == 200, url
    assert annotator.post(score, {"items": [{"prompt": "p", "completion": "c"}]}, format="json").status_code == 403
    assert annotator.get("/api/v1/model-versions/", {"project": home.pk}).status_code == 403
    for url in (f"/api/v1/model-versions/{foreign.version.pk}/", f"/api/v1/model-versions/{MISSING_ID}/"):
        assert reviewer.get(url).status_code == 404
    assert reviewer.post(f"/api/v1/model-versions/{foreign.version.pk}/score/", {"items": []}, format="json").status_code == 404


@pytest.mark.parametrize("items, field", [
    ([{"prompt": "p", "completion": "c"}] * 65, "items"),
    ([{"prompt": "p", "completion": "c" * 8_001}], "completion"),
    ([{"prompt": "p" * 8_001, "completion": "c"}], "prompt"),
    ([{"prompt": [{"role": "user", "content": "x" * 8_001}], "completion": "c"}], "prompt"),
    ([{"prompt": [{"role": "user", "content": "x"}] * 33, "completion": "c"}], "prompt"),
    ([{"prompt": {"nested": "dict"}, "completion": "c"}], "prompt"),
])
def test_score_request_is_bounded(home, home_reward, items, field):
    response = _api(make_member(home, "reviewer")).post(f"/api/v1/model-versions/{home_reward.pk}/score/",
                                                        {"items": items}, format="json")
    assert response.status_code == 400 and field in response.content.decode(), response.content


# --- training settings: only MODEL_DIR, never another project's registry directory -----------------------------


@pytest.fixture
def model_dir(settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    (settings.MODEL_DIR / "registry").mkdir(parents=True)
    return settings.MODEL_DIR


@pytest.mark.parametrize("kind, config, field", [
    ("ppo", {"policy": "/etc"}, "policy"),
    ("dpo", {"policy": "../../etc"}, "policy"),
    ("dpo", {"policy": "models/registry/dpo-zz-secret-tenant-run1"}, "policy"),
    ("reward", {"backbone": "~/models/x"}, "backbone"),
    ("reward", {"backbone": "{model_dir}/registry/reward-zz-secret-tenant-run1"}, "backbone"),
    ("ppo", {"policy": "{model_dir}/registry/ppo-zz-secret-tenant-run7/../ppo-zz-secret-tenant-run8"}, "policy"),
    ("ppo", {"policy": "{model_dir}/registry"}, "policy"),
    ("ppo", {"policy": "{model_dir}/../outside"}, "policy"),
    ("ppo", {"policy": "reward-zz-secret-tenant-run1"}, "policy"),  # another project's registered name
    ("retrain", {"method": "ppo", "steps": {"ppo": {"policy": "/tmp"}}}, "steps.ppo.policy"),
    ("publish", {"policy_version": "{foreign_version}"}, "policy_version"),
])
def test_training_settings_refuse_foreign_paths(home, foreign, model_dir, kind, config, field):
    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if value == "{foreign_version}":
            return foreign.version.pk
        return value.format(model_dir=model_dir) if isinstance(value, str) else value

    admin = make_member(home, "admin")
    with pytest.raises(ValidationError) as excinfo:
        training_services.start_training(project=home, kind=kind, config=fill(config), enqueue=False)
    assert field in excinfo.value.message_dict
    response = _api(admin).post("/api/v1/training-runs/", {"project": home.slug, "kind": kind, "config": fill(config)},
                                format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not TrainingRun.objects.filter(project=home).exists()


@pytest.mark.parametrize("kind, config", [
    ("ppo", {}),
    ("ppo", {"policy": "{model_dir}/registry/ppo-home-tenant-run3"}),
    ("dpo", {"policy": "smollm2-135m-instruct"}),
    ("reward", {"backbone": "{model_dir}/all-minilm-l6-v2"}),
    ("reward", {"backbone": "reward-home"}),  # this project's registered name
])
def test_training_settings_accept_own_models(home, home_reward, model_dir, kind, config):
    config = {k: v.format(model_dir=model_dir) for k, v in config.items()}
    run = training_services.start_training(project=home, kind=kind, config=config, enqueue=False)
    assert run.pk


def test_tokens_of_demoted_superuser_lose_the_admin(home, foreign):
    """A superuser flag taken away counts at the next request (the user row is read on each one)."""
    boss = UserFactory(is_superuser=True, is_staff=True)
    token = Token.objects.create(user=boss)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(f"/api/v1/projects/{foreign.project.pk}/").status_code == 200
    boss.is_superuser = False
    boss.save()
    assert client.get(f"/api/v1/projects/{foreign.project.pk}/").status_code == 404
