"""The data browser in a real browser: a reviewer filters the task list (htmx swaps the table and the URL
follows), opens a task and sees every judgement and the consensus; an annotator opens their history and
revises a judgement of a task that is still open."""

import re

import pytest

from feedback import services
from feedback.models import LABELS, ComparisonTask, Judgement
from tests.e2e.browser import log_in
from tests.feedback.factories import make_tasks

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "browse-the-data-41"


def judge_next(project, user, *, flags=()):
    assignment = services.next_task(project=project, annotator=user)
    ranking = [[LABELS[assignment.label_order.index(cid)]] for cid in sorted(assignment.label_order)]
    services.submit_judgement(task=assignment.task, annotator=user, ranking=ranking, flags=flags)
    return assignment.task


@pytest.fixture
def scene():
    """Three tasks: the first judged by both annotators (one says unsafe), so complete; two open."""
    project = services.create_project(slug="e2e-browse", name="E2E browse", overlap=2)
    tasks = make_tasks(project, 3)
    users = {}
    for name, role in (("rev", "reviewer"), ("ann1", "annotator"), ("ann2", "annotator")):
        membership, _ = services.add_member(project=project, username=name, role=role, password=PASSWORD)
        users[name] = membership.user
    for _ in range(3):
        judge_next(project, users["ann1"])
    judge_next(project, users["ann2"], flags=["unsafe"])
    return {"project": project, "tasks": tasks, **users}


def test_reviewer_filters_opens_a_task_and_sees_its_judgements(live_server, page, page_problems, scene):
    first = scene["tasks"][0].pk
    log_in(page, live_server.url, "rev", PASSWORD, start="/p/e2e-browse/tasks/")
    assert page.locator("#task-table tbody tr").count() == 3
    page.select_option("#filter-flag", "unsafe")  # htmx: the table is swapped and the URL follows
    page.wait_for_url(re.compile(r"flag=unsafe"))
    page.wait_for_function("document.querySelectorAll('#task-table tbody tr').length === 1")
    assert page.locator(f"#task-row-{first}").is_visible()
    page.select_option("#filter-status", "open")
    page.wait_for_selector("#no-tasks")
    page.select_option("#filter-status", "complete")
    page.wait_for_selector(f"#task-row-{first}")
    with page.expect_navigation():
        page.click(f"#task-row-{first} a")
    assert page.locator("#judgements .judgement").count() == 2
    text = page.locator("#judgements").inner_text()
    assert "ann1" in text and "ann2" in text and "unsafe" in text
    assert page.locator("#consensus-ranking").is_visible()
    assert page.locator("#consensus-agreement").inner_text() == "1.00"
    assert page_problems == []


def test_annotator_revises_a_judgement_from_their_history(live_server, page, page_problems, scene):
    complete, open_task = scene["tasks"][0], scene["tasks"][1]
    log_in(page, live_server.url, "ann1", PASSWORD, start="/p/e2e-browse/history/")
    assert page.locator("#history-table tr[id^=history-]").count() == 3
    assert page.locator(f"#revise-{complete.pk}").count() == 0  # complete: no longer revisable
    with page.expect_navigation():
        page.click(f"#revise-{open_task.pk}")
    assignment = open_task.assignments.get(annotator=scene["ann1"])
    for rank, cid in enumerate(sorted(assignment.label_order, reverse=True), 1):  # best first: the higher id now
        page.select_option(f"select[name=rank_{LABELS[assignment.label_order.index(cid)]}]", str(rank))
    page.check("#flag-all_bad")
    with page.expect_navigation():
        page.click("#revise")
    assert "was revised" in page.locator(".messages").inner_text()
    judgement = Judgement.objects.get(task=open_task, annotator=scene["ann1"])
    assert judgement.ranking == [[cid] for cid in sorted(assignment.label_order, reverse=True)]
    assert judgement.flags == ["all_bad"]
    assert Judgement.objects.filter(task=open_task).count() == 1
    assert ComparisonTask.objects.get(pk=open_task.pk).status == "open"
    assert page_problems == []
