"""The annotate path's hand-written SQL (feedback/services/queue_sql.py, feedback/selectors/sql.py,
core/authentication.py) answers what the ORM answered: the same instances, the same validation, the same
indexes, and a token that is revoked or a user that is deactivated stops working on the very next request."""

import pytest
from django.db import connection
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from feedback import selectors, services
from feedback.selectors import sql
from feedback.api.serializers import JudgementInputSerializer, judgement_input
from feedback.models import Assignment, ComparisonTask, Project
from feedback.services import queue_sql
from tests.feedback.factories import make_member, make_tasks


def field_values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_rows_read_by_hand_equal_the_orms_instances(project, annotator):
    make_tasks(project, 2, k=3)
    leased = services.next_task(project=project, annotator=annotator)
    assert field_values(leased) == field_values(Assignment.objects.get(pk=leased.pk))
    assert not leased._state.adding

    held = queue_sql.held_lease(annotator_id=annotator.pk, project_id=project.pk, now=leased.leased_at)
    orm = Assignment.objects.select_related("task__prompt").get(pk=leased.pk)
    assert field_values(held) == field_values(orm)
    assert field_values(held.task) == field_values(orm.task)
    assert field_values(held.task.prompt) == field_values(orm.task.prompt)

    task, role = sql.member_task(user_id=annotator.pk, task_id=leased.task_id)
    assert role == "annotator"
    assert field_values(task) == field_values(ComparisonTask.objects.get(pk=leased.task_id))
    assert field_values(task.project) == field_values(Project.objects.get(pk=project.pk))
    by_slug, _ = sql.member_project(user_id=annotator.pk, slug=project.slug)
    assert field_values(by_slug) == field_values(project)


def test_lookups_answer_nothing_to_non_members(project, annotator):
    make_tasks(project, 1)
    outsider = make_member(services.create_project(slug="other", name="Other"), "admin")
    task = project.tasks.get()
    assert sql.member_task(user_id=outsider.pk, task_id=task.pk) is None
    assert sql.member_project(user_id=outsider.pk, pk=project.pk) is None
    assert sql.member_project(user_id=outsider.pk, slug=project.slug) is None


BODIES = [
    {"ranking": [["a"], ["b"]]},
    {"ranking": [["b", "a"]], "flags": ["unsafe"], "confidence": 5},
    {"ranking": ["a", "b"], "confidence": None, "flags": []},
    {"ranking": [["a"], ["b"]], "comment": "fine"},
    {"ranking": [["a"], ["b"]], "comment": "x" * 5001},
    {"ranking": [["a"], ["b"]], "confidence": True},
    {"ranking": [["a"], ["b"]], "confidence": "3"},
    {"ranking": [["a"], ["b"]], "confidence": 0},
    {"ranking": [["a"], ["b"]], "confidence": 3.0},
    {"ranking": [["a"], ["b"]], "flags": [" unsafe "]},
    {"ranking": [["a"], ["b"]], "flags": [""]},
    {"ranking": [["a"], ["b"]], "flags": ["a", "b", "c", "d", "e"]},
    {"ranking": [["a"], ["b"]], "flags": "unsafe"},
    {"ranking": [["a"], ["b"]], "flags": ["\ud800"]},
    {"ranking": [["a"], [""]]},
    {"ranking": [[1]]},
    {"ranking": []},
    {"ranking": "a"},
    {},
    {"ranking": [["a"], ["b"]], "unknown": 1},
    [["a"], ["b"]],
]


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_judgement_input_validates_as_the_serializer_does(body):
    serializer = JudgementInputSerializer(data=body)
    if serializer.is_valid():
        assert judgement_input(body) == serializer.validated_data
    else:
        with pytest.raises(serializers.ValidationError) as excinfo:
            judgement_input(body)
        assert excinfo.value.detail == serializer.errors


def _plan(sql: str, params: list) -> str:
    """The database's plan for `sql`, as one string."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        else:  # a few-row table would be read whole; ask whether the index serves at all
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
        return " ".join(str(row) for row in cursor.fetchall())


def test_the_candidate_pick_walks_the_open_task_index(project, annotator):
    make_tasks(project, 3)
    assert "task_queue_open" in _plan(queue_sql._candidate_sql(), [project.pk, annotator.pk])


def test_the_gold_pick_walks_the_open_gold_index(project, annotator):
    """Not the (project, status, id) index, which walks every open task to find the few gold ones (90 ms at 1M)."""
    tasks = make_tasks(project, 5)
    ComparisonTask.objects.filter(pk=tasks[-1].pk).update(is_gold=True, gold_ranking=[[0], [1]])
    assert "task_gold_open" in _plan(queue_sql._gold_sql(connection.vendor), [project.pk, annotator.pk])
    assert queue_sql.first_unseen_gold(project_id=project.pk, annotator_id=annotator.pk).pk == tasks[-1].pk


@pytest.fixture
def token_client(annotator):
    token = Token.objects.create(user=annotator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_a_revoked_token_stops_working_on_the_next_request(project, project_admin, annotator, token_client):
    make_tasks(project, 2)
    assert token_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 200
    services.revoke_token(actor=project_admin, user=annotator, project=project)
    response = token_client.post(f"/api/v1/projects/{project.slug}/next-task/")
    assert response.status_code == 401 and response.json()["detail"] == "Invalid token."


def test_a_replaced_token_stops_working_and_the_new_one_works(project, project_admin, annotator, token_client):
    make_tasks(project, 2)
    assert token_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 200
    fresh = services.create_token(actor=project_admin, user=annotator, project=project)
    assert token_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 401
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {fresh.key}")
    assert token_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 200


def test_a_deactivated_user_is_refused_on_the_next_request(project, annotator, token_client):
    make_tasks(project, 2)
    assert token_client.post(f"/api/v1/projects/{project.slug}/next-task/").status_code == 200
    type(annotator).objects.filter(pk=annotator.pk).update(is_active=False)  # no signal: nothing cached to drop
    response = token_client.post(f"/api/v1/projects/{project.slug}/next-task/")
    assert response.status_code == 401 and response.json()["detail"] == "User inactive or deleted."


def test_a_lost_superuser_flag_counts_on_the_next_request(project, annotator):
    other = services.create_project(slug="elsewhere", name="Elsewhere")
    make_tasks(other, 1)
    boss = make_member(project, "annotator", is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=boss).key}")
    assert client.post(f"/api/v1/projects/{other.slug}/next-task/").status_code == 200
    type(boss).objects.filter(pk=boss.pk).update(is_superuser=False)
    assert client.post(f"/api/v1/projects/{other.slug}/next-task/").status_code == 404
    assert selectors.projects_for_user(user=type(boss).objects.get(pk=boss.pk)).filter(pk=other.pk).count() == 0
