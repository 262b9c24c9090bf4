"""In a real browser: a long answer is folded behind "Show all" and opens with the keyboard, the lease counts
down in local time and is renewed while the annotator is active, and the dashboard's leaderboard is drawn on
the Elo scale with its numbers underneath."""

import re

import pytest

from feedback import importing, services
from feedback.models import Assignment, Completion
from tests.e2e.browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "polish-pass-91"
LONG_ANSWER = "\n\n".join(f"Paragraph {i} of a very long answer." for i in range(60))


@pytest.fixture
def long_task():
    project = services.create_project(slug="polish", name="Polish", instructions="Rank them.", completions_per_task=2,
                                      overlap=1, lease_seconds=30)
    row = importing.clean_row({"id": "q", "prompt": "Explain?", "completions": [
        {"text": LONG_ANSWER, "model": "m0"}, {"text": "Short answer.\n\n```python\nx = 1\n```", "model": "m1"}]}, 1)
    services.import_prompts(project=project, rows=[row])
    services.add_member(project=project, username="ann", role="annotator", password=PASSWORD)
    return project


def test_long_answer_folds_and_the_lease_counts_down_and_renews(live_server, page, page_problems, long_task):
    log_in(page, live_server.url, "ann", PASSWORD, start="/p/polish/annotate/")
    page.wait_for_selector(".annotate[data-task]")
    long_label = next(label for label in "ab" if "Paragraph 59" in page.inner_text(f"#completion-{label} .body"))
    body, button = page.locator(f"#body-{long_label}"), page.locator(f"#completion-{long_label} .show-all")

    # Folded: shorter than its content, with a visible "Show all" button.
    assert "folded" in body.get_attribute("class")
    assert body.evaluate("b => b.clientHeight < b.scrollHeight / 2")
    assert button.inner_text() == "Show all" and button.get_attribute("aria-expanded") == "false"
    # Keyboard: focus the button, Enter opens the whole answer (and does not submit the form).
    button.focus()
    page.keyboard.press("Enter")
    assert button.get_attribute("aria-expanded") == "true" and button.inner_text() == "Show less"
    assert body.evaluate("b => b.clientHeight >= b.scrollHeight - 1")
    assert "/annotate/" in page.url
    # E folds every long answer again, and a second E opens them all (nothing is ranked by it).
    button.evaluate("b => b.blur()")  # focus off the button: keys go to the page's shortcuts
    page.keyboard.press("e")
    assert "folded" in body.get_attribute("class") and button.inner_text() == "Show all"
    page.keyboard.press("e")
    assert "folded" not in body.get_attribute("class") and button.get_attribute("aria-expanded") == "true"
    assert page.inner_text("#ranking-preview").strip() == ""
    assert page.locator("pre code span.n").count() >= 1  # highlighted by Pygments on the server

    # The countdown, in the browser's local time.
    assert re.fullmatch(r"0:[0-3]\d left \(until \d\d:\d\d( [AP]M)?\)", page.inner_text("#lease-countdown"))
    first_until = Assignment.objects.get(annotator__username="ann").leased_until

    # Activity on the page renews the lease once less than half of it is left (15 s of a 30 s lease).
    page.mouse.move(200, 300)
    with page.expect_response(re.compile(r"/lease/$"), timeout=25_000) as renewal:
        page.mouse.move(220, 320)
    assert renewal.value.status == 200
    assert Assignment.objects.get(annotator__username="ann").leased_until > first_until
    assert page_problems == []


@pytest.fixture
def judged_project():
    project = services.create_project(slug="board", name="Board", instructions="Rank.", completions_per_task=2,
                                      overlap=1)
    rows = [importing.clean_row({"id": f"q{i}", "prompt": f"Q{i}?", "completions": [
        {"text": f"a{i}", "model": "model-strong"}, {"text": f"b{i}", "model": "model-weak"}]}, i + 1) for i in range(12)]
    services.import_prompts(project=project, rows=rows)
    services.add_member(project=project, username="rev", role="reviewer", password=PASSWORD)
    services.add_member(project=project, username="judge", role="annotator")
    from django.contrib.auth import get_user_model

    judge = get_user_model().objects.get(username="judge")
    for i in range(12):
        held = services.next_task(project=project, annotator=judge)
        names = {label: Completion.objects.get(pk=cid).model_name for label, cid in held.label_map().items()}
        strong = next(label for label, name in names.items() if name == "model-strong")
        weak = next(label for label in names if label != strong)
        ranking = [[strong], [weak]] if i < 9 else [[weak], [strong]]
        services.submit_judgement(task=held.task, annotator=judge, ranking=ranking)
    return project


def test_dashboard_leaderboard_is_drawn_on_the_elo_scale_with_its_numbers(live_server, page, page_problems,
                                                                          judged_project):
    log_in(page, live_server.url, "rev", PASSWORD, start="/p/board/dashboard/")
    page.wait_for_selector("#chart-leaderboard")
    axis = page.evaluate("() => { const c = document.getElementById('chart-leaderboard').chart;"
                         " return [c.scales.x.min, c.scales.x.max, c.data.datasets[0].data]; }")
    low, high, bars = axis
    assert len(bars) == 2 and all(lo < hi for lo, hi in bars)
    assert 0 < low <= min(lo for lo, _ in bars) and max(hi for _, hi in bars) <= high  # the axis spans the intervals
    assert low < 1000 < high and high > 1050  # on the Elo scale (around 1000), not 0…1
    painted = page.evaluate("() => { const c = document.getElementById('chart-leaderboard');"
                            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }")
    assert painted > 500  # the canvas was drawn on
    table = page.locator("#numbers-leaderboard table")
    assert table.is_visible() and table.locator("tr").count() == 3  # header + two models
    assert "model-strong" in table.inner_text() and "model-weak" in table.inner_text()
    for numbers in ("#numbers-per-hour", "#numbers-agreement", "#numbers-annotators"):
        assert page.locator(f"{numbers} table").count() == 1
    assert page_problems == []
