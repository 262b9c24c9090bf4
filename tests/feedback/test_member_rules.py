"""The member rules live in feedback.services.projects and every door keeps them (issue 25, issue 30 item 4):
a project always keeps one admin (members page, Django admin, `add_member` command); a role change is audited
as member_role_changed {from, to}; a revoked token is never brought back by a membership change."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from core.models import AuditEvent
from feedback import services
from feedback.models import Membership
from tests.feedback.factories import ProjectFactory, UserFactory, make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(db):
    project = ProjectFactory(slug="team")
    admin = make_member(project, "admin")
    annotator = make_member(project, "annotator")
    root = UserFactory(is_superuser=True, is_staff=True)
    return project, admin, annotator, root


def membership(project, user) -> Membership:
    return Membership.objects.get(project=project, user=user)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_change_role_refuses_to_demote_the_last_admin_with_a_coded_error(team):
    project, admin, _, _ = team
    with pytest.raises(services.LastAdmin) as refused:
        services.change_role(membership=membership(project, admin), role="reviewer")
    assert refused.value.code == "last_admin" and refused.value.status_code == 409
    assert membership(project, admin).role == "admin"
    with pytest.raises(services.LastAdmin):
        services.remove_member(membership=membership(project, admin))
    assert membership(project, admin).role == "admin"


def test_a_role_change_is_audited_with_from_and_to(team):
    project, admin, annotator, _ = team
    services.change_role(membership=membership(project, annotator), role="reviewer", actor=admin)
    services.change_role(membership=membership(project, annotator), role="reviewer", actor=admin)  # no change
    services.add_member(project=project, username=annotator.username, role="admin", actor=admin)  # via add_member
    rows = list(AuditEvent.objects.filter(project=project, target=f"user:{annotator.pk}",
                                          event_type__startswith="member_").order_by("pk")
                .values_list("event_type", "extra"))
    assert [(kind, extra.get("from"), extra.get("to")) for kind, extra in rows] == [
        ("member_added", None, None), ("member_role_changed", "annotator", "reviewer"),
        ("member_role_changed", "reviewer", "admin")]


def test_members_page_refuses_demoting_or_removing_the_last_admin(team):
    project, admin, _, _ = team
    client, mine = signed_in(admin), membership(project, admin)
    page = client.post(f"/p/{project.slug}/members/{mine.pk}/role/", {"role": "annotator"}, follow=True)
    assert services.LastAdmin.default_message in page.content.decode()
    client.post(f"/p/{project.slug}/members/{mine.pk}/remove/")
    assert membership(project, admin).role == "admin"


def test_django_admin_cannot_demote_or_delete_the_last_admin(team):
    project, admin, annotator, root = team
    client, mine = signed_in(root), membership(project, admin)
    # the membership's own change form
    page = client.post(f"/admin/feedback/membership/{mine.pk}/change/", {"role": "annotator"})
    assert page.status_code == 200 and services.LastAdmin.default_message in page.content.decode()
    # its delete page, and the bulk delete action
    assert client.post(f"/admin/feedback/membership/{mine.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/feedback/membership/", {"action": "delete_selected", "_selected_action": [mine.pk],
                                                "post": "yes"})
    assert membership(project, admin).role == "admin"
    # the project's members formset: demote the admin, and delete the admin's row
    rows = list(project.memberships.order_by("pk"))
    for change in ({"role": "annotator"}, {"DELETE": "on"}):
        data = {"name": project.name, "instructions": "", "completions_per_task": 2, "overlap": project.overlap,
                "lease_seconds": project.lease_seconds, "gold_rate": 0, "agreement_threshold": 0.75,
                "max_overlap": "", "memberships-TOTAL_FORMS": len(rows), "memberships-INITIAL_FORMS": len(rows),
                "memberships-MIN_NUM_FORMS": 0, "memberships-MAX_NUM_FORMS": 1000}
        for i, row in enumerate(rows):
            data |= {f"memberships-{i}-id": row.pk, f"memberships-{i}-project": project.pk,
                     f"memberships-{i}-user": row.user_id, f"memberships-{i}-role": row.role}
            if row.pk == mine.pk:
                data |= {f"memberships-{i}-{k}": v for k, v in change.items()}
        page = client.post(f"/admin/feedback/project/{project.pk}/change/", data)
        assert page.status_code == 200 and services.LastAdmin.default_message in page.content.decode()
        assert membership(project, admin).role == "admin"
    # a swap in one save passes: the annotator becomes admin, the admin annotator
    data |= {f"memberships-{i}-role": ("annotator" if row.pk == mine.pk else "admin") for i, row in enumerate(rows)}
    data = {k: v for k, v in data.items() if not k.endswith("-DELETE")}
    assert client.post(f"/admin/feedback/project/{project.pk}/change/", data).status_code == 302
    assert (membership(project, admin).role, membership(project, annotator).role) == ("annotator", "admin")
    assert not Token.objects.filter(user__in=[admin, annotator]).exists()  # the admin issues no tokens


def test_add_member_command_refuses_demoting_the_last_admin(team):
    project, admin, _, _ = team
    with pytest.raises(CommandError, match="keeps at least one admin"):
        call_command("add_member", admin.username, "--project", project.slug, "--role", "annotator",
                     "--no-token", stdout=io.StringIO())
    assert membership(project, admin).role == "admin"


def test_a_revoked_token_is_not_brought_back_by_any_door(team):
    project, admin, annotator, root = team
    services.create_token(actor=admin, user=annotator, project=project)
    services.revoke_token(actor=admin, user=annotator, project=project)
    mine = membership(project, annotator)
    signed_in(admin).post(f"/p/{project.slug}/members/{mine.pk}/role/", {"role": "reviewer"})
    signed_in(root).post(f"/admin/feedback/membership/{mine.pk}/change/", {"role": "annotator"})
    services.add_member(project=project, username=annotator.username, role="reviewer")  # a script's default
    with pytest.raises(CommandError, match="revoked"):  # refused before any write
        call_command("add_member", annotator.username, "--project", project.slug, "--role", "admin",
                     stdout=io.StringIO())
    assert membership(project, annotator).role == "reviewer"
    assert not Token.objects.filter(user=annotator).exists()

    out = io.StringIO()
    call_command("add_member", annotator.username, "--project", project.slug, "--role", "annotator", "--no-token",
                 stdout=out)
    assert out.getvalue().strip().splitlines() == [f"{annotator.username} is annotator in {project.slug}"]
    assert not Token.objects.filter(user=annotator).exists()

    out = io.StringIO()  # asked for: a new key, printed as the last line (the contract)
    call_command("add_member", annotator.username, "--project", project.slug, "--role", "annotator", "--new-token",
                 stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == Token.objects.get(user=annotator).key


def test_add_member_command_prints_a_token_for_a_new_user_and_the_same_one_again(team):
    project = team[0]
    first, again = io.StringIO(), io.StringIO()
    call_command("add_member", "newcomer", "--project", project.slug, "--role", "annotator", stdout=first)
    call_command("add_member", "newcomer", "--project", project.slug, "--role", "reviewer", stdout=again)
    key = Token.objects.get(user__username="newcomer").key
    assert first.getvalue().splitlines()[-1] == again.getvalue().splitlines()[-1] == key
