"""A project admin creates a preference snapshot from the exports page, sees it in the table with its sha256
and split counts, and downloads its train file, in a real browser."""

import re
from pathlib import Path

import pytest

from feedback import services
from feedback.models import PreferenceSnapshot
from tests.e2e.browser import log_in
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from tests.feedback.test_review_pages import judge_every_task

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "export-pages-62"


@pytest.fixture
def scene(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    project = ProjectFactory(slug="e2e-exports", name="E2E exports", completions_per_task=2, overlap=1)
    make_tasks(project, 6, k=2)
    judge_every_task(project, make_member(project, "annotator"), lambda i, ids: [[ids[0]], [ids[1]]])
    services.add_member(project=project, username="boss", role="admin", password=PASSWORD)
    return project


def test_admin_creates_a_snapshot_sees_it_and_downloads_it(live_server, page, page_problems, scene, tmp_path):
    base = live_server.url
    log_in(page, base, "boss", PASSWORD, start="/p/e2e-exports/")
    page.click("#nav-exports")
    page.wait_for_url(re.compile(r"/p/e2e-exports/exports/$"))
    assert "No snapshot yet." in page.inner_text("#snapshots")

    page.select_option("select[name=format]", "jsonl")
    page.fill("input[name=test_fraction]", "0")
    page.fill("input[name=min_agreement]", "5")  # the browser's own check would stop it: the server refuses it too
    page.evaluate("document.getElementById('export-form').noValidate = true")
    with page.expect_navigation():
        page.click("#create-snapshot")
    assert "less than or equal to 1" in page.inner_text("#field-min_agreement")
    assert not PreferenceSnapshot.objects.exists()
    page_problems.clear()  # the 400 above was the point

    page.fill("input[name=min_agreement]", "0")
    with page.expect_navigation():
        page.click("#create-snapshot")
    snapshot = PreferenceSnapshot.objects.get()
    row = page.locator(f"#snapshot-{snapshot.pk}")
    assert "complete" in row.inner_text() and snapshot.sha256[:12] in row.inner_text()
    assert row.locator("input.sha256").input_value() == snapshot.sha256
    assert "6 / 0" in row.inner_text()  # pairs train / test

    with page.expect_download() as info:
        row.get_by_role("link", name="train.jsonl").click()
    saved = tmp_path / "downloaded.jsonl"
    info.value.save_as(saved)
    assert info.value.suggested_filename == f"e2e-exports-snapshot-{snapshot.pk}-train.jsonl"
    assert saved.read_bytes() == (Path(snapshot.path) / "train.jsonl").read_bytes()
    assert len(saved.read_bytes().splitlines()) == 6
    assert page_problems == []
