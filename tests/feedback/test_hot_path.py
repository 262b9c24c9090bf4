"""The annotate path stays cheap: queries per request are pinned (a regression fails here), and the shortcuts
taken for speed answer exactly what the slower, documented paths answered."""

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.exceptions import Conflict
from core.permissions import ADMIN, REVIEWER, has_project_role
from feedback import selectors, services
from feedback.api.serializers import (
    JudgementOutputSerializer, NextTaskOutputSerializer, judgement_output, next_task_output,
)
from feedback.models import Judgement
from tests.feedback.factories import make_member, make_tasks

# Per request, token authentication and BEGIN/COMMIT included. SQLite takes its write lock with the transaction
# and needs no row lock on the annotator. PostgreSQL locks that row (one statement more), claims a place and reads
# the completion texts in one statement (one fewer), and writes a judgement, its assignment and the task's count in
# one (data-modifying CTEs), so a submit is two statements fewer there.
NEXT_TASK_QUERIES = 10
SUBMIT_QUERIES = 8 if connection.vendor == "sqlite" else 6


@pytest.fixture
def token_client(annotator):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    return client


def rank_all(body):
    return [[c["label"]] for c in body["completions"]]


def test_next_task_and_submit_query_counts_are_pinned(project, token_client, django_assert_max_num_queries):
    make_tasks(project, 3, k=3)
    with django_assert_max_num_queries(NEXT_TASK_QUERIES):
        body = token_client.post(f"/api/v1/projects/{project.slug}/next-task/").json()
    with django_assert_max_num_queries(SUBMIT_QUERIES):
        response = token_client.post(f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": rank_all(body)},
                                     format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 201
    with django_assert_max_num_queries(SUBMIT_QUERIES):  # the retry: answered from the stored judgement
        again = token_client.post(f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": rank_all(body)},
                                  format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.json() == response.json()


def test_holding_a_lease_answers_the_same_task_cheaply(project, token_client, django_assert_max_num_queries):
    make_tasks(project, 2, k=2)
    first = token_client.post(f"/api/v1/projects/{project.slug}/next-task/").json()
    with django_assert_max_num_queries(NEXT_TASK_QUERIES):
        again = token_client.post(f"/api/v1/projects/{project.slug}/next-task/").json()
    assert again == first


def test_fast_outputs_equal_the_documented_serializers(project, annotator):
    make_tasks(project, 1, k=3)
    assignment = services.next_task(project=project, annotator=annotator)
    completions = selectors.labelled_completions(assignment=assignment)
    assignment.completions = completions
    assert next_task_output(assignment, completions) == NextTaskOutputSerializer(assignment).data
    judgement, _ = services.submit_judgement(task=assignment.task, annotator=annotator,
                                             ranking=[[c["label"]] for c in completions], flags=["unsafe"],
                                             confidence=4, comment="ok")
    assert judgement_output(judgement) == JudgementOutputSerializer(judgement).data


def test_a_key_used_for_another_task_conflicts_while_leased_and_stores_nothing(project, annotator):
    make_tasks(project, 2, k=2)
    first = services.next_task(project=project, annotator=annotator)
    services.submit_judgement(task=first.task, annotator=annotator, ranking=[["a"], ["b"]], idempotency_key="same")
    second = services.next_task(project=project, annotator=annotator)
    with pytest.raises(Conflict) as excinfo:
        services.submit_judgement(task=second.task, annotator=annotator, ranking=[["a"], ["b"]],
                                  idempotency_key="same")
    assert excinfo.value.message == services.IDEMPOTENCY_KEY_REUSED
    assert Judgement.objects.filter(annotator=annotator).count() == 1
    second.refresh_from_db()
    assert second.state == second.State.LEASED  # still theirs to judge with a fresh key
    services.submit_judgement(task=second.task, annotator=annotator, ranking=[["a"], ["b"]], idempotency_key="new")


def test_a_key_used_for_another_task_conflicts_without_a_lease_too(project, annotator):
    make_tasks(project, 2, k=2)
    first = services.next_task(project=project, annotator=annotator)
    services.submit_judgement(task=first.task, annotator=annotator, ranking=[["a"], ["b"]], idempotency_key="same")
    other = project.tasks.exclude(pk=first.task_id).get()
    with pytest.raises(Conflict) as excinfo:
        services.submit_judgement(task=other, annotator=annotator, ranking=[["a"], ["b"]], idempotency_key="same")
    assert excinfo.value.message == services.IDEMPOTENCY_KEY_REUSED


def test_a_role_read_with_the_project_is_forgotten_when_memberships_change(project):
    admin = make_member(project, "admin")
    seen = selectors.get_project_for_user(user=admin, project_ref=project.slug)
    assert has_project_role(user=admin, project=seen, role=ADMIN)
    make_member(project, "admin")  # the project keeps an admin
    services.add_member(project=project, username=admin.username, role="reviewer")  # demoted in this request
    assert not has_project_role(user=admin, project=seen, role=ADMIN)
    assert has_project_role(user=admin, project=seen, role=REVIEWER)


def test_the_project_lookup_reads_the_role_in_the_same_query(project, django_assert_num_queries):
    reviewer = make_member(project, "reviewer")
    with django_assert_num_queries(1):
        seen = selectors.get_project_for_user(user=reviewer, project_ref=project.pk)
        assert has_project_role(user=reviewer, project=seen, role=REVIEWER)
        assert not has_project_role(user=reviewer, project=seen, role=ADMIN)
