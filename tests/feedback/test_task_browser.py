"""The data browser: the task list (filters, keyset pages, bad parameters), the task page per role, the
history, and revising a judgement while its task is open."""

import pytest
from django.test import Client
from django.urls import reverse

from core.models import AuditEvent
from feedback import selectors, services
from feedback.models import LABELS, Completion, ComparisonTask, Judgement
from feedback.selectors import TaskFilters, task_page
from feedback.selectors import tasks as task_selectors
from tests.feedback.factories import ProjectFactory, make_member, make_tasks

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def judge_next(project, user, *, lower_first=True, flags=(), comment=""):
    """Lease the next task and rank its completions by id (lower first, or higher first)."""
    assignment = services.next_task(project=project, annotator=user)
    order = sorted(assignment.label_order, reverse=not lower_first)
    ranking = [[LABELS[assignment.label_order.index(cid)]] for cid in order]
    services.submit_judgement(task=assignment.task, annotator=user, ranking=ranking, flags=flags, comment=comment)
    return assignment.task


@pytest.fixture
def world(project):
    """Six tasks: 1–3 complete (3 disputed and flagged unsafe, 2 flagged all bad), 4 open with one
    judgement, 5 untouched, 6 gold; task 5's completions come from model "special-model"."""
    tasks = make_tasks(project, 6)
    first, second = make_member(project, "annotator"), make_member(project, "annotator")
    for i in range(4):
        judge_next(project, first, flags=["all_bad"] if i == 1 else (), comment=f"first-{i}")
    judge_next(project, second, comment="second-secret-0")
    judge_next(project, second)
    judge_next(project, second, lower_first=False, flags=["unsafe"])
    Completion.objects.filter(tasks=tasks[4]).update(model_name="special-model")
    services.mark_gold(task=tasks[5], ranking=[[c] for c in sorted(tasks[5].completions.values_list("id", flat=True))])
    return {"tasks": [t.pk for t in tasks], "first": first, "second": second,
            "reviewer": make_member(project, "reviewer"), "admin": make_member(project, "admin")}


def ids(project, **filters):
    return [row["id"] for row in task_page(project=project, filters=TaskFilters(**filters)).rows]


def test_filters(project, world):
    t = world["tasks"]
    assert ids(project) == t
    assert ids(project, status="complete") == t[:3]
    assert ids(project, status="open") == t[3:]
    assert ids(project, gold="yes") == [t[5]]
    assert ids(project, gold="no") == t[:5]
    assert ids(project, agreement="low") == [t[2]]
    assert ids(project, agreement="high") == t[:2]
    assert ids(project, flag="unsafe") == [t[2]]
    assert ids(project, flag="all_bad") == [t[1]]
    assert ids(project, flag="any") == [t[1], t[2]]
    assert ids(project, model="special-model") == [t[4]]
    assert ids(project, q="question 3?") == [t[3]]
    assert ids(project, status="complete", flag="any", agreement="high") == [t[1]]


def test_list_page_shows_rows_and_filters_through_the_query_string(project, world):
    response = client_for(world["reviewer"]).get(reverse("feedback:task-list", args=[project.slug]),
                                                  {"flag": "unsafe", "status": "complete"})
    assert response.status_code == 200
    rows = response.context["page"].rows
    assert [r["id"] for r in rows] == [world["tasks"][2]]
    assert rows[0]["agreement"] == 0.0 and rows[0]["flags"] == ["unsafe"] and rows[0]["models"] == ["m0", "m1"]
    assert f'id="task-row-{world["tasks"][2]}"' in response.content.decode()


def walk(project, filters, page_size):
    """Follow "later" links from the first page, then "earlier" links back: ids seen each way."""
    forward, page = [], task_page(project=project, filters=filters, page_size=page_size)
    pages = [page]
    while True:
        forward += [r["id"] for r in page.rows]
        if page.next_after is None:
            break
        page = task_page(project=project, filters=filters, after=page.next_after, page_size=page_size)
        pages.append(page)
    backward = []
    while page.prev_before is not None:
        page = task_page(project=project, filters=filters, before=page.prev_before, page_size=page_size)
        backward = [r["id"] for r in page.rows] + backward
    return forward, backward + [r["id"] for r in pages[-1].rows]


def test_keyset_pages_cover_every_task_exactly_once(project, world):
    make_tasks(project, 17, k=2)  # the first six prompts exist already: 17 tasks in all
    every = sorted(ComparisonTask.objects.filter(project=project).values_list("id", flat=True))
    assert len(every) == 17
    for size in (1, 2, 5, 50):
        forward, backward = walk(project, TaskFilters(), size)
        assert forward == every, size
        assert backward == every, size
    forward, _ = walk(project, TaskFilters(status="open"), 3)
    assert forward == sorted(ComparisonTask.objects.filter(project=project, status="open").values_list("id", flat=True))


def test_agreement_pages_stop_at_their_budget_and_still_cover_every_match_once(project, world, monkeypatch):
    monkeypatch.setattr(task_selectors, "AGREEMENT_BATCH", 1)
    monkeypatch.setattr(task_selectors, "AGREEMENT_SCAN_LIMIT", 2)
    first = task_page(project=project, filters=TaskFilters(agreement="low"), page_size=5)
    assert first.rows == [] and first.scanned_to == world["tasks"][1]  # read tasks 1 and 2: budget spent
    forward, backward = walk(project, TaskFilters(agreement="low"), 5)
    assert forward == [world["tasks"][2]] and backward == [world["tasks"][2]]


def test_filters_no_index_answers_read_a_bounded_id_range_per_page(project, world, monkeypatch):
    cases = [TaskFilters(flag="any"), TaskFilters(model="special-model"), TaskFilters(q="question"),
             TaskFilters(status="complete", flag="any"), TaskFilters(agreement="high")]
    expected = {f: ids(project, **f.__dict__) for f in cases}  # with the default budgets: one page holds all
    monkeypatch.setattr(task_selectors, "ID_WINDOW", 2)
    monkeypatch.setattr(task_selectors, "SCAN_BUDGET_IDS", 2)
    t = world["tasks"]
    first = task_page(project=project, filters=TaskFilters(flag="unsafe"), page_size=5)
    assert first.rows == [] and first.scanned_to == t[1] and first.next_after == t[1]
    for filters in cases:
        forward, backward = walk(project, filters, 1)
        assert forward == expected[filters] and backward == expected[filters], filters


@pytest.mark.parametrize("query, param", [
    ({"status": "bogus"}, "status"), ({"gold": "maybe"}, "gold"), ({"agreement": "0.5"}, "agreement"),
    ({"flag": "rude"}, "flag"), ({"after": "abc"}, "after"), ({"before": "٣"}, "before"),
    ({"after": "9" * 30}, "after"), ({"after": "1", "before": "5"}, "after"), ({"q": "x" * 201}, "q"),
    ({"q": "a\x00b"}, "q"), ({"model": "m" * 201}, "model"), ({"after": "-1"}, "after"),
])
def test_bad_parameters_are_400_naming_the_parameter(project, world, query, param):
    response = client_for(world["reviewer"]).get(reverse("feedback:task-list", args=[project.slug]), query)
    assert response.status_code == 400
    assert response.content.decode().startswith(param)


def test_history_bad_cursor_is_400(project, world):
    response = client_for(world["first"]).get(reverse("feedback:history", args=[project.slug]), {"before": "x"})
    assert response.status_code == 400 and b"before:" in response.content


def test_annotators_do_not_get_the_task_list(project, world):
    assert client_for(world["first"]).get(reverse("feedback:task-list", args=[project.slug])).status_code == 404


def test_reviewer_sees_every_judgement_and_the_consensus(project, world):
    task_id = world["tasks"][2]
    response = client_for(world["reviewer"]).get(reverse("feedback:task-detail", args=[project.slug, task_id]))
    page = response.content.decode()
    assert response.status_code == 200
    assert world["first"].username in page and world["second"].username in page
    assert "m0" in page and 'id="consensus-agreement">0.00<' in page and "unsafe" in page
    assert len(response.context["review"]["judgements"]) == 2


def test_annotator_sees_only_their_own_judgement(project, world):
    task_id = world["tasks"][0]
    response = client_for(world["first"]).get(reverse("feedback:task-detail", args=[project.slug, task_id]))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="own-ranking"' in page
    assert world["second"].username not in page and "second-secret-0" not in page  # the other judge's comment
    assert "m0" not in page and "consensus" not in page  # no model names, no consensus for annotators
    # A task they never held does not exist for them.
    untouched = world["tasks"][4]
    assert client_for(world["second"]).get(
        reverse("feedback:task-detail", args=[project.slug, untouched])).status_code == 404


def test_history_lists_own_judgements_newest_first_in_keyset_pages(project, world):
    mine = list(Judgement.objects.filter(annotator=world["first"]).order_by("-id").values_list("task_id", flat=True))
    page = selectors.judgement_history(project=project, annotator=world["first"], page_size=3)
    assert [i["task"].pk for i in page["items"]] == mine[:3] and page["newer_after"] is None
    older = selectors.judgement_history(project=project, annotator=world["first"], before=page["older_before"],
                                              page_size=3)
    assert [i["task"].pk for i in older["items"]] == mine[3:] and older["older_before"] is None
    newer = selectors.judgement_history(project=project, annotator=world["first"], after=older["newer_after"],
                                              page_size=3)
    assert [i["task"].pk for i in newer["items"]] == mine[:3]
    response = client_for(world["first"]).get(reverse("feedback:history", args=[project.slug]))
    assert response.status_code == 200
    assert f'id="revise-{world["tasks"][3]}"' in response.content.decode()  # open task: revisable
    assert f'id="revise-{world["tasks"][0]}"' not in response.content.decode()  # complete: not


def revise_form(task, user, *, lower_first, flags=(), comment="revised"):
    assignment = task.assignments.get(annotator=user)
    order = sorted(assignment.label_order, reverse=not lower_first)
    form = {f"rank_{LABELS[assignment.label_order.index(cid)]}": str(rank) for rank, cid in enumerate(order, 1)}
    return {**form, "flags": list(flags), "confidence": "2", "comment": comment}


def test_revise_while_open_changes_the_one_judgement_and_is_audited(project, world):
    task = ComparisonTask.objects.get(pk=world["tasks"][3])
    user = world["first"]
    before = Judgement.objects.get(task=task, annotator=user)
    url = reverse("feedback:revise", args=[project.slug, task.pk])
    response = client_for(user).post(url, revise_form(task, user, lower_first=False, flags=["unsafe"]))
    assert response.status_code == 302
    after = Judgement.objects.get(task=task, annotator=user)
    assert after.pk == before.pk and Judgement.objects.filter(task=task).count() == 1
    assert after.ranking == [[cid] for cid in sorted(task.completions.values_list("id", flat=True), reverse=True)]
    assert after.ranking == before.ranking[::-1]
    assert (after.flags, after.confidence, after.comment) == (["unsafe"], 2, "revised")
    task.refresh_from_db()
    assert (task.status, task.judgements_done) == ("open", 1)
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.JUDGEMENT_REVISED)
    assert event.actor == user and event.target == f"judgement:{after.pk}" and event.project == project
    assert event.extra["before"]["ranking"] == before.ranking and event.extra["after"]["ranking"] == after.ranking


def test_revise_is_refused_once_complete(project, world):
    task = ComparisonTask.objects.get(pk=world["tasks"][0])
    user = world["first"]
    before = Judgement.objects.get(task=task, annotator=user).ranking
    response = client_for(user).post(reverse("feedback:revise", args=[project.slug, task.pk]),
                                     revise_form(task, user, lower_first=False), follow=True)
    assert "can no longer change" in response.content.decode()
    assert Judgement.objects.get(task=task, annotator=user).ranking == before
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.JUDGEMENT_REVISED).exists()


def test_revise_is_refused_once_adjudicated_or_pinned_by_a_snapshot(project, world):
    from core.exceptions import Conflict

    task = ComparisonTask.objects.get(pk=world["tasks"][3])
    user = world["first"]
    assignment = task.assignments.get(annotator=user)
    ranking = [[label] for label in LABELS[:2]]
    services.create_snapshot(project=project)
    with pytest.raises(Conflict, match="snapshot"):
        services.revise_judgement(task=task, annotator=user, ranking=ranking)
    ids_ = sorted(assignment.label_order)
    services.adjudicate(task=task, reviewer=world["reviewer"], ranking=[[ids_[0]], [ids_[1]]])
    with pytest.raises(Conflict, match="adjudicated"):
        services.revise_judgement(task=task, annotator=user, ranking=ranking)


def test_revise_of_a_task_not_judged_is_refused(project, world):
    task = ComparisonTask.objects.get(pk=world["tasks"][3])
    # The second annotator never held task 4: the page does not exist for them.
    response = client_for(world["second"]).post(reverse("feedback:revise", args=[project.slug, task.pk]),
                                                 {"rank_a": "1", "rank_b": "2"})
    assert response.status_code == 404
    # A reviewer may open it but has no judgement of their own to revise.
    response = client_for(world["reviewer"]).post(reverse("feedback:revise", args=[project.slug, task.pk]),
                                                  {"rank_a": "1", "rank_b": "2"}, follow=True)
    assert services.NOT_JUDGED in response.content.decode()
    assert Judgement.objects.filter(task=task).count() == 1


def test_members_of_another_project_get_404(project, world):
    outsider = make_member(ProjectFactory(), "admin")
    client = client_for(outsider)
    task_id = world["tasks"][0]
    for url in (reverse("feedback:task-list", args=[project.slug]),
                reverse("feedback:task-detail", args=[project.slug, task_id]),
                reverse("feedback:history", args=[project.slug])):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("feedback:revise", args=[project.slug, task_id]), {}).status_code == 404


def test_nav_links(project, world):
    page = client_for(world["reviewer"]).get(reverse("feedback:project-detail", args=[project.slug])).content.decode()
    assert 'id="nav-tasks"' in page and 'id="nav-history"' in page
    page = client_for(world["first"]).get(reverse("feedback:project-detail", args=[project.slug])).content.decode()
    assert 'id="nav-tasks"' not in page and 'id="nav-history"' in page


def test_a_task_of_another_project_is_404_under_this_projects_slug(project, world):
    other = ProjectFactory()
    foreign_task = make_tasks(other, 1)[0]
    reviewer = world["reviewer"]
    make_member(other, "annotator")
    url = reverse("feedback:task-detail", args=[project.slug, foreign_task.pk])
    assert client_for(reviewer).get(url).status_code == 404
    response = client_for(reviewer).post(reverse("feedback:revise", args=[project.slug, foreign_task.pk]), {})
    assert response.status_code == 404
