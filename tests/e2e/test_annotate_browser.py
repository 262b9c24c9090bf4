"""An annotator logs in and ranks three tasks in a real browser with the keyboard only.

It checks what only a browser can: the keyboard script (static/feedback/annotate.js) is served and
works, untrusted model output cannot run script, code blocks render as code, and what was pressed is
exactly what lands in the database, label by label, through the random per-annotator label order.
"""

import re

import pytest

from feedback import importing, services
from feedback.models import LABELS, Assignment, Judgement
from tests.e2e.browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "keyboard-only-73"
MALICIOUS = (
    'Here is my answer. <script>window.__xss = 1</script>\n\n'
    '<img src=x onerror="window.__xss=2">\n\n'
    "```python\nprint('hello from a code block')\n```\n"
)
INSTRUCTIONS = "Rank the answers **best first**.\n\n- Prefer correct answers\n- Flag unsafe ones"

# What the annotator presses on the 1st, 2nd and 3rd task served, and what must be stored.
PLANS = [
    {"keys": ["c", "a", "b", "x", "5"], "preview": "C > A > B", "groups": [["c"], ["a"], ["b"]],
     "flags": ["all_bad"], "confidence": 5},
    {"keys": ["b", "=", "c", "a", "2"], "preview": "B = C > A", "groups": [["b", "c"], ["a"]],
     "flags": [], "confidence": 2},
    {"keys": ["a", "b", "c", "u", "4"], "preview": "A > B > C", "groups": [["a"], ["b"], ["c"]],
     "flags": ["unsafe"], "confidence": 4},
]


@pytest.fixture
def scene():
    project = services.create_project(
        slug="e2e-project", name="E2E project", instructions=INSTRUCTIONS, completions_per_task=3, overlap=1,
    )
    rows = [
        importing.clean_row({
            "id": f"q{i}", "prompt": f"Question number {i}?",
            "completions": [
                {"text": MALICIOUS if (i, j) == (0, 1) else f"Answer {i}.{j}", "model": f"secret-model-{j}"}
                for j in range(3)
            ],
        }, i + 1)
        for i in range(3)
    ]
    assert services.import_prompts(project=project, rows=rows).tasks_created == 3
    services.add_member(project=project, username="ann", role="annotator", password=PASSWORD)
    return project


def expected_ids(assignment: Assignment, groups):
    order = assignment.label_order
    return [sorted(order[LABELS.index(label)] for label in group) for group in groups]


def test_annotator_ranks_three_tasks_with_the_keyboard(live_server, page, page_problems, scene):
    base = live_server.url

    # Login required: the project list sends an anonymous visitor to the login page.
    log_in(page, base, "ann", PASSWORD)
    page.get_by_role("link", name="E2E project").click()
    page.wait_for_url(re.compile(r"/p/e2e-project/$"))
    # Instructions are rendered Markdown.
    assert page.locator(".instructions strong").inner_text() == "best first"
    assert page.locator(".instructions li").count() == 2
    page.click("#start")

    served, saw_malicious = [], False
    for n, plan in enumerate(PLANS):
        page.wait_for_selector(".annotate[data-task]")
        task_id = int(page.get_attribute(".annotate", "data-task"))
        served.append(task_id)
        assert page.inner_text("#done-today") == str(n)  # progress "done today" counts up
        assert [page.inner_text(f"#completion-{label} .label") for label in "abc"] == ["A", "B", "C"]
        assert "secret-model" not in page.content()  # model names never reach the annotator

        malicious = page.locator(".completion", has_text="<script>")
        if malicious.count():
            saw_malicious = True
            body = malicious.locator(".body")
            text = body.inner_text()
            assert "<script>window.__xss = 1</script>" in text  # shown as text, literally
            assert '<img src=x onerror="window.__xss=2">' in text
            assert body.locator("pre > code").inner_text().strip() == "print('hello from a code block')"
            assert page.locator(".completion img, .completion script").count() == 0
            assert page.evaluate("typeof window.__xss") == "undefined"

        for key in plan["keys"]:
            page.keyboard.press(key)
        # The script wrote the ranking into the rank selects and the preview; a missing or broken
        # annotate.js would leave both empty.
        assert page.inner_text("#ranking-preview") == plan["preview"]
        ranks = {label: page.input_value(f"select[name=rank_{label}]") for label in "abc"}
        assert all(ranks.values()), ranks
        for group in plan["groups"]:
            assert len({ranks[label] for label in group}) == 1  # a tie shares one rank
        assert page.is_checked(f"input[name=confidence][value='{plan['confidence']}']")
        assert page.is_checked("#flag-all_bad") == ("all_bad" in plan["flags"])
        assert page.is_checked("#flag-unsafe") == ("unsafe" in plan["flags"])
        with page.expect_navigation():
            page.keyboard.press("Enter")

    page.wait_for_selector("#nothing-left")
    assert "Done today: 3" in page.inner_text("#nothing-left")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page_problems == []  # no JS errors, annotate.js and app.css served (no 404)

    assert saw_malicious  # the untrusted-output checks above really ran
    judgements = list(Judgement.objects.filter(annotator__username="ann").order_by("id"))
    assert [j.task_id for j in judgements] == served
    for judgement, plan in zip(judgements, PLANS):
        assignment = Assignment.objects.get(task_id=judgement.task_id, annotator__username="ann")
        assert assignment.state == Assignment.State.SUBMITTED
        assert [sorted(group) for group in judgement.ranking] == expected_ids(assignment, plan["groups"])
        assert [sorted(group) for group in judgement.ranking_labels] == plan["groups"]
        assert judgement.flags == plan["flags"]
        assert judgement.confidence == plan["confidence"]
        assert judgement.idempotency_key  # the form's key came along
    assert len(judgements[1].ranking[0]) == 2  # the tie pressed with "="
