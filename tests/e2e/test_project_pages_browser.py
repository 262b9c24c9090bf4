"""A project admin does the whole job in a real browser: creates a project, uploads prompts (htmx, with its
progress bar), sees the counts, and adds a member."""

import json
import re

import pytest

from feedback import services
from feedback.models import ComparisonTask, Membership, Prompt
from tests.feedback.factories import UserFactory
from tests.e2e.browser import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "admin-pages-41"
ROWS = [
    {"id": f"b{i}", "prompt": f"Browser question {i}?",
     "completions": [{"text": f"answer {i}.a", "model": "m1"}, {"text": f"answer {i}.b", "model": "m2"}]}
    for i in range(3)
]


@pytest.fixture
def scene():
    home = services.create_project(slug="home", name="Home project")
    services.add_member(project=home, username="boss", role="admin", password=PASSWORD)
    UserFactory(username="newbie")


def test_admin_creates_a_project_uploads_prompts_and_adds_a_member(live_server, page, page_problems, scene):
    base = live_server.url
    log_in(page, base, "boss", PASSWORD)

    page.click("#new-project")
    page.wait_for_url(re.compile(r"/projects/new/$"))
    page.fill("input[name=slug]", "browser-made")
    page.fill("input[name=name]", "Browser made")
    page.fill("textarea[name=instructions]", "Pick the **better** answer.")
    page.fill("input[name=overlap]", "1")
    with page.expect_navigation():
        page.click("#save")
    page.wait_for_url(re.compile(r"/p/browser-made/import/$"))
    assert Membership.objects.get(project__slug="browser-made", user__username="boss").role == "admin"

    content = ("\n".join(json.dumps(r) for r in ROWS) + "\n").encode()
    page.set_input_files("input[name=file]", {"name": "prompts.jsonl", "mimeType": "application/jsonl", "buffer": content})
    page.click("#upload")  # htmx posts the file and swaps in the result, no page load
    page.wait_for_selector("#import-ok")
    assert page.inner_text("#prompts-created") == "3"
    assert page.inner_text("#tasks-created") == "3"
    assert Prompt.objects.filter(project__slug="browser-made").count() == 3
    assert ComparisonTask.objects.filter(project__slug="browser-made").count() == 3

    page.get_by_role("link", name="Members").click()
    page.wait_for_url(re.compile(r"/p/browser-made/members/$"))
    page.fill("input[name=username]", "newbie")
    page.select_option("#add-member select[name=role]", "reviewer")
    with page.expect_navigation():
        page.click("#add")
    page.wait_for_selector("#member-newbie")
    assert page.input_value("#member-newbie select[name=role]") == "reviewer"
    assert Membership.objects.get(project__slug="browser-made", user__username="newbie").role == "reviewer"
    assert page_problems == []
