"""The reviewers' queue and adjudication pages through Django's test client: filters, pages that cover every
disputed task once, adjudication with ties (stored + audited), the next task, bad input and permissions."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from core.models import AuditEvent
from feedback import services
from feedback.models import LABELS, Adjudication
from feedback.selectors.review import PAGE_SIZE
from tests.feedback.factories import ProjectFactory, make_member, make_tasks

pytestmark = pytest.mark.django_db

N_TASKS = 30
UNANIMOUS = range(0, 3)  # both judges agree: never in the queue
REVERSED = range(3, 13)  # every pair disputed: agreement 0
UNSAFE_TASK, ALL_BAD_TASK, GOLD_TASK = 5, 20, 25  # indexes into the tasks


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def judge_every_task(project, annotator, decide, flags_of=lambda index: []):
    """The annotator takes every task the queue serves and ranks it `decide(index, ids)` (completion ids, best first)."""
    index_of = {t.pk: i for i, t in enumerate(project.tasks.order_by("id"))}
    while (assignment := services.next_task(project=project, annotator=annotator)) is not None:
        label = {cid: LABELS[i] for i, cid in enumerate(assignment.label_order)}
        index = index_of[assignment.task_id]
        ranking = decide(index, sorted(assignment.label_order))
        services.submit_judgement(task=assignment.task, annotator=annotator, flags=flags_of(index),
                                  ranking=[[label[cid] for cid in group] for group in ranking])


@pytest.fixture
def scene(db):
    project = ProjectFactory(slug="reviewed", completions_per_task=3, overlap=2)
    tasks = make_tasks(project, N_TASKS, k=3)
    first, second = make_member(project, "annotator"), make_member(project, "annotator")
    judge_every_task(project, first, lambda i, ids: [[ids[0]], [ids[1]], [ids[2]]])

    def second_opinion(i, ids):
        if i in UNANIMOUS:
            return [[ids[0]], [ids[1]], [ids[2]]]
        if i in REVERSED:
            return [[ids[2]], [ids[1]], [ids[0]]]
        return [[ids[1]], [ids[0]], [ids[2]]]  # one pair of three disputed: agreement 2/3

    flags = {UNSAFE_TASK: ["unsafe"], ALL_BAD_TASK: ["all_bad"]}
    judge_every_task(project, second, second_opinion, lambda i: flags.get(i, []))
    services.mark_gold(task=tasks[GOLD_TASK], ranking=[[c] for c in sorted(tasks[GOLD_TASK].completions.values_list("id", flat=True))])
    return {"project": project, "tasks": tasks, "reviewer": make_member(project, "reviewer"),
            "annotator": first, "admin": make_member(project, "admin")}


def queue_ids(client, slug, **params) -> tuple[list[int], str]:
    response = client.get(f"/p/{slug}/review/", params)
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    return [int(x) for x in re.findall(r'id="queue-task-(\d+)"', html)], html


def ids(tasks, indexes):
    return {tasks[i].pk for i in indexes}


def test_pages_cover_each_disputed_task_once_least_agreement_first(scene):
    client, tasks = client_for(scene["reviewer"]), scene["tasks"]
    disputed = ids(tasks, set(range(N_TASKS)) - set(UNANIMOUS) - {GOLD_TASK})
    first, html = queue_ids(client, "reviewed")
    assert f"<strong>{len(disputed)}</strong> tasks match" in html
    assert len(first) == PAGE_SIZE and 'id="page-next"' in html and 'id="page-previous"' not in html
    second, html = queue_ids(client, "reviewed", page=2)
    assert 'id="page-next"' not in html and 'id="page-previous"' in html
    assert len(first + second) == len(set(first + second)) and set(first + second) == disputed
    assert set(first[: len(REVERSED)]) == ids(tasks, REVERSED)  # agreement 0 comes before 2/3
    # A page past the end (emptied by adjudications) shows the last page, not an error.
    assert queue_ids(client, "reviewed", page=99)[0] == second


def test_filters_narrow_the_queue_and_are_kept_by_the_pager(scene):
    client, tasks = client_for(scene["reviewer"]), scene["tasks"]
    assert set(queue_ids(client, "reviewed", agreement_below="0.5")[0]) == ids(tasks, REVERSED)
    assert set(queue_ids(client, "reviewed", flag="unsafe")[0]) == ids(tasks, [UNSAFE_TASK])
    assert set(queue_ids(client, "reviewed", flag="all_bad")[0]) == ids(tasks, [ALL_BAD_TASK])
    assert set(queue_ids(client, "reviewed", flag="any")[0]) == ids(tasks, [UNSAFE_TASK, ALL_BAD_TASK])
    assert set(queue_ids(client, "reviewed", gold="only")[0]) == ids(tasks, [GOLD_TASK])
    assert len(queue_ids(client, "reviewed", gold="include", page=2)[0]) == N_TASKS - len(UNANIMOUS) - PAGE_SIZE
    assert queue_ids(client, "reviewed", status="adjudicated")[0] == []
    services.adjudicate(task=tasks[7], reviewer=scene["reviewer"], ranking=[[c] for c in tasks[7].completions.values_list("id", flat=True)])
    assert queue_ids(client, "reviewed", status="adjudicated")[0] == [tasks[7].pk]
    assert tasks[7].pk not in queue_ids(client, "reviewed", agreement_below="0.5")[0]
    assert tasks[7].pk in queue_ids(client, "reviewed", agreement_below="0.5", status="all")[0]
    # The pager's links keep the filters; the task links carry them to the adjudication page.
    _, html = queue_ids(client, "reviewed", gold="include")
    assert 'href="?gold=include&amp;page=2"' in html
    assert f'/p/reviewed/review/{tasks[3].pk}/?gold=include"' in html


def test_adjudicating_with_a_tie_stores_it_audits_it_and_opens_the_next_task(scene):
    client, tasks = client_for(scene["reviewer"]), scene["tasks"]
    task = tasks[UNSAFE_TASK]
    page = client.get(f"/p/reviewed/review/{task.pk}/", {"flag": "any"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="rank_a"' in html and 'name="rank_c"' in html and "Question 5?" in html
    assert "unsafe" in html and "C &gt; B &gt; A" in html  # the second judge's ranking, in the page's labels
    # Models stay anonymous. Attribute values are left out: a CSRF or lease token is random text that can hold "m0".
    shown = re.sub(r'(value|content|data-[\w-]+)="[^"]*"', "", html)
    assert not re.search(r"\bm[01]\b", shown)
    response = client.post(f"/p/reviewed/review/{task.pk}/?flag=any", {"rank_a": "2", "rank_b": "1", "rank_c": "1", "note": "B and C alike"})
    assert response.status_code == 302
    assert response["Location"] == f"/p/reviewed/review/{tasks[ALL_BAD_TASK].pk}/?flag=any"  # the next task, same filters
    a, b, c = sorted(task.completions.values_list("id", flat=True))
    adjudication = Adjudication.objects.get(task=task)
    assert adjudication.ranking == [[b, c], [a]] and adjudication.reviewer == scene["reviewer"]
    assert adjudication.note == "B and C alike"
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.TASK_ADJUDICATED, target=f"task:{task.pk}")
    assert event.actor == scene["reviewer"] and event.extra["ranking"] == [[b, c], [a]] and event.extra["ties"] is True
    # The last task of a queue leads back to the (now empty) queue.
    last = client.post(f"/p/reviewed/review/{tasks[ALL_BAD_TASK].pk}/?flag=any", {"rank_a": "1", "rank_b": "2", "rank_c": "3"})
    assert last["Location"] == "/p/reviewed/review/?flag=any"
    assert queue_ids(client, "reviewed", flag="any")[0] == []
    # Reopening shows the stored decision in the selects.
    html = client.get(f"/p/reviewed/review/{task.pk}/").content.decode()
    assert re.search(r'name="rank_b"[^>]*>.*?<option value="1" selected>', html, re.S)


@pytest.mark.parametrize("form, message", [
    ({"rank_a": "1", "rank_b": "2"}, "Give completion C a rank"),
    ({"rank_a": "1", "rank_b": "2", "rank_c": "9"}, "Give completion C a rank"),
    ({"rank_a": "1", "rank_b": "x", "rank_c": "2"}, "Give completion B a rank"),
    ({"rank_a": "1", "rank_b": "2", "rank_c": "٣"}, "Give completion C a rank"),
    ({"rank_a": "1", "rank_b": "2", "rank_c": "3", "note": "n" * 3000}, "at most 2000 characters"),
])
def test_bad_rankings_are_a_400_naming_the_field(scene, form, message):
    task = scene["tasks"][4]
    response = client_for(scene["reviewer"]).post(f"/p/reviewed/review/{task.pk}/", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Adjudication.objects.filter(task=task).exists()


@pytest.mark.parametrize("params, field", [
    ({"agreement_below": "abc"}, "Agreement below"), ({"agreement_below": "nan"}, "Agreement below"),
    ({"agreement_below": "2"}, "Agreement below"), ({"flag": "nope"}, "Flagged"), ({"status": "x"}, "Adjudication"),
    ({"gold": "\x00"}, "Gold tasks"), ({"page": "0"}, "page"), ({"page": "9" * 30}, "page"), ({"page": "٣"}, "page"),
])
def test_bad_filters_are_a_400_naming_the_field(scene, params, field):
    client, task = client_for(scene["reviewer"]), scene["tasks"][4]
    for url in ("/p/reviewed/review/", f"/p/reviewed/review/{task.pk}/"):
        response = client.get(url, params)
        assert response.status_code == 400
        assert field in response.content.decode()


def test_only_reviewers_of_the_project_see_the_pages(scene):
    task = scene["tasks"][4]
    urls = ["/p/reviewed/review/", f"/p/reviewed/review/{task.pk}/"]
    outsider = make_member(ProjectFactory(slug="elsewhere"), "admin")
    for user in (scene["annotator"], outsider):
        client = client_for(user)
        for url in urls:
            assert client.get(url).status_code == 404
        assert client.post(urls[1], {"rank_a": "1", "rank_b": "1", "rank_c": "1"}).status_code == 404
    # A task of another project, under a project the user does review: 404 as well.
    other_task = make_tasks(outsider.memberships.get().project, 1, k=2)[0]
    assert client_for(scene["reviewer"]).get(f"/p/reviewed/review/{other_task.pk}/").status_code == 404
    assert client_for(outsider).get(f"/p/reviewed/review/{other_task.pk}/").status_code == 404
    assert not Adjudication.objects.exists()
    assert Client().get(urls[0]).status_code == 302  # anonymous: to the login page
    assert client_for(scene["admin"]).get(urls[1]).status_code == 200  # admins review too


@pytest.mark.parametrize("ranking", [[[1, "x"]], [1, 2, 3], [[]], "abc", [[True, 2, 3]]])
def test_adjudicate_refuses_malformed_rankings_with_a_validation_error(scene, ranking):
    with pytest.raises(ValidationError) as caught:
        services.adjudicate(task=scene["tasks"][4], reviewer=scene["reviewer"], ranking=ranking)
    assert "ranking" in caught.value.message_dict
