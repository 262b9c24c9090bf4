"""A late ranking is treated alike through the API and the page: taken back when its place is free, refused with a
coded error (never a sentence to compare) when it is not."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from feedback.models import Assignment, ComparisonTask, Judgement
from feedback.services import release_expired_leases
from tests.feedback.factories import make_member, make_tasks


@pytest.fixture
def one_task(project):
    project.overlap = 1
    project.save()
    make_tasks(project, 1, k=2)
    ComparisonTask.objects.update(judgements_needed=1)
    return project


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def lease(client, project) -> dict:
    response = client.post(f"/api/v1/projects/{project.pk}/next-task/")
    assert response.status_code == 200
    return response.json()


def judge(client, task, body):
    return client.post(f"/api/v1/tasks/{task['task']}/judgements/", {"ranking": [["a"], ["b"]], **body}, format="json")


def expire(annotator):
    Assignment.objects.filter(annotator=annotator).update(leased_until=timezone.now() - timedelta(seconds=1))


def test_an_expired_lease_whose_place_was_kept_is_taken_back_through_the_api(one_task):
    alice = make_member(one_task)
    client = client_for(alice)
    task = lease(client, one_task)
    expire(alice)
    response = judge(client, task, {})
    assert response.status_code == 201
    assert Judgement.objects.filter(annotator=alice, task_id=task["task"]).count() == 1
    assert ComparisonTask.objects.get(pk=task["task"]).status == ComparisonTask.Status.COMPLETE


def test_a_released_task_is_taken_back_with_the_lease_token_and_the_labels_seen(one_task):
    alice = make_member(one_task)
    client = client_for(alice)
    task = lease(client, one_task)
    order = list(Assignment.objects.get(annotator=alice).label_order)
    expire(alice)
    assert release_expired_leases(project=one_task) == 1
    without = judge(client, task, {})
    assert without.status_code == 403 and without.json()["code"] == "not_leaseholder"
    response = judge(client, task, {"lease_token": task["lease_token"]})
    assert response.status_code == 201
    assert list(Assignment.objects.get(annotator=alice).label_order) == order  # the labels she ranked, not a reshuffle
    judgement = Judgement.objects.get(annotator=alice)
    label_to_id = dict(zip("ab", order))
    assert judgement.ranking == [[label_to_id["a"]], [label_to_id["b"]]]


def test_a_released_task_whose_places_others_took_is_refused_with_lease_taken(one_task):
    alice, bob = make_member(one_task), make_member(one_task)
    task = lease(client_for(alice), one_task)
    expire(alice)
    assert lease(client_for(bob), one_task)["task"] == task["task"]  # bob's next-task released alice's lease
    response = judge(client_for(alice), task, {"lease_token": task["lease_token"]})
    assert response.status_code == 409 and response.json()["code"] == "lease_taken"
    assert not Judgement.objects.filter(annotator=alice).exists()
    assert ComparisonTask.objects.get(pk=task["task"]).slots_taken == 1


def test_another_annotators_lease_token_opens_nothing(one_task):
    alice, mallory = make_member(one_task), make_member(one_task)
    task = lease(client_for(alice), one_task)
    response = judge(client_for(mallory), task, {"lease_token": task["lease_token"]})
    assert response.status_code == 403 and response.json()["code"] == "not_leaseholder"
    assert not Judgement.objects.exists()


def test_a_second_ranking_is_refused_as_already_judged(one_task):
    alice = make_member(one_task)
    client = client_for(alice)
    task = lease(client, one_task)
    assert judge(client, task, {}).status_code == 201
    again = judge(client, task, {"lease_token": task["lease_token"]})
    assert again.status_code == 409 and again.json()["code"] == "already_judged"
    assert Judgement.objects.count() == 1


def test_the_lease_token_names_no_completion(one_task):
    """The token is signed, not encrypted: it carries positions in a server-keyed order, never completion ids, so
    reading it cannot tell an annotator which answer is whose (a candidate's completions are a task's newest rows)."""
    from django.core import signing

    from feedback.services.leases import TOKEN_SALT

    alice = make_member(one_task)
    task = lease(client_for(alice), one_task)
    payload = signing.loads(task["lease_token"], salt=TOKEN_SALT)
    assert set(payload) == {"t", "u", "p", "at"}
    assert sorted(payload["p"]) == list(range(2))
