"""A reviewer filters the disagreements queue, opens a task, ranks it with the keyboard (a tie included) and
lands on the next task of the same filtered queue, in a real browser (static/feedback/adjudicate.js)."""

import re

import pytest

from feedback import services
from feedback.models import Adjudication
from tests.e2e.browser import log_in
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from tests.feedback.test_review_pages import judge_every_task

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "review-keys-58"
FLAGGED = {1: ["unsafe"], 3: ["all_bad"], 4: ["unsafe"]}


@pytest.fixture
def scene():
    project = ProjectFactory(slug="e2e-review", name="E2E review", completions_per_task=3, overlap=2)
    tasks = make_tasks(project, 5, k=3, texts={1: "**bold** <script>window.__xss = 1</script>"})
    judge_every_task(project, make_member(project, "annotator"), lambda i, ids: [[ids[0]], [ids[1]], [ids[2]]])
    judge_every_task(project, make_member(project, "annotator"), lambda i, ids: [[ids[2]], [ids[1]], [ids[0]]],
                     lambda i: FLAGGED.get(i, []))
    services.add_member(project=project, username="rev", role="reviewer", password=PASSWORD)
    return tasks


def test_reviewer_filters_opens_ranks_with_a_tie_and_lands_on_the_next_task(live_server, page, page_problems, scene):
    tasks, base = scene, live_server.url
    log_in(page, base, "rev", PASSWORD, start="/p/e2e-review/review/")
    assert page.inner_text("#queue-count").startswith("5 tasks match")

    page.select_option("select[name=flag]", "any")
    with page.expect_navigation():
        page.click("#queue-filters button[type=submit]")
    assert page.inner_text("#queue-count").startswith("3 tasks match")
    rows = page.locator("#queue tbody tr")
    assert [rows.nth(i).get_attribute("id") for i in range(3)] == [f"queue-task-{tasks[i].pk}" for i in FLAGGED]

    with page.expect_navigation():
        page.click(f"#queue-task-{tasks[1].pk} a")
    assert page.get_attribute(".adjudicate", "data-task") == str(tasks[1].pk)
    assert page.locator(".completion .body strong").first.inner_text() == "bold"  # Markdown, and no script ran
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert "unsafe" in page.inner_text("#judgements")

    for key in ["b", "=", "c", "a"]:
        page.keyboard.press(key)
    assert page.inner_text("#ranking-preview") == "B = C > A"
    assert [page.input_value(f"select[name=rank_{label}]") for label in "abc"] == ["3", "1", "1"]  # competition ranking, as annotate.js
    with page.expect_navigation():
        page.keyboard.press("Enter")

    page.wait_for_url(re.compile(rf"/p/e2e-review/review/{tasks[3].pk}/\?flag=any$"))
    assert page.get_attribute(".adjudicate", "data-task") == str(tasks[3].pk)
    assert f"Task {tasks[1].pk} adjudicated: B = C &gt; A" in page.content()
    a, b, c = sorted(tasks[1].completions.values_list("id", flat=True))
    assert Adjudication.objects.get(task=tasks[1]).ranking == [[b, c], [a]]

    # Backspace undoes, then the mouse and the keyboard agree; N leaves without deciding.
    page.keyboard.press("a")
    page.keyboard.press("Backspace")
    assert page.inner_text("#ranking-preview") == ""
    page.keyboard.press("n")
    page.wait_for_url(re.compile(rf"/p/e2e-review/review/{tasks[4].pk}/\?flag=any$"))
    assert not Adjudication.objects.filter(task=tasks[3]).exists()
    assert page.locator("#next-task").get_attribute("href").startswith(f"/p/e2e-review/review/{tasks[3].pk}/")
    assert page_problems == []
