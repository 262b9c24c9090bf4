"""In a real browser: a project admin starts a reward run from the settings form (a bad value is refused next
to its field, the fixed one starts the run), reads the run's settings table and cancels it without a reload;
a reviewer of the same project sees runs but no button that starts one."""

import re

import pytest

from feedback import services as feedback_services
from tests.e2e.browser import log_in
from training.models import TrainingRun

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "training-pages-58"


@pytest.fixture
def project():
    project = feedback_services.create_project(slug="train-me", name="Train me", overlap=1)
    feedback_services.add_member(project=project, username="boss", role="admin", password=PASSWORD)
    feedback_services.add_member(project=project, username="rev", role="reviewer", password=PASSWORD)
    return project


def test_admin_starts_a_run_from_the_form_and_cancels_it(live_server, page, page_problems, project):
    log_in(page, live_server.url, "boss", PASSWORD, start="/training/")
    page.select_option("form[action$='/train-me/start/'] select[name=kind]", "reward")
    page.click("form[action$='/train-me/start/'] button:has-text('Settings…')")
    page.wait_for_url(re.compile(r"/training/projects/train-me/start/\?kind=reward$"))
    assert "Peak AdamW learning rate" in page.inner_text("#setting-learning_rate .help")

    # A value out of its range is refused beside its field; nothing starts.
    page.fill("input[name=learning_rate]", "-1")
    page.click("#start-run")
    page.wait_for_selector("#error-learning_rate")
    assert "learning_rate" in page.inner_text("#error-learning_rate")
    assert TrainingRun.objects.count() == 0
    page_problems[:] = [p for p in page_problems if not re.search(r"HTTP 400 .*/start/$", p)]  # the refusal itself

    # YAML-style scientific notation is a number: the run starts and its page shows the typed settings.
    page.fill("input[name=learning_rate]", "3e-4")
    page.click("#start-run")
    page.wait_for_url(re.compile(r"/training/runs/\d+/$"))
    run = TrainingRun.objects.get()
    assert run.kind == TrainingRun.Kind.REWARD and run.config["learning_rate"] == pytest.approx(3e-4)
    settings_text = page.inner_text("#run-settings")
    assert "learning_rate" in settings_text and "0.0003" in settings_text

    # Cancel answers at once, in place, and the queued run ends "cancelled".
    page.click("#cancel-run")
    page.wait_for_selector("text=cancelled")
    run.refresh_from_db()
    assert run.state == TrainingRun.State.CANCELLED
    assert page.locator("#cancel-run").count() == 0
    assert page_problems == []


def test_a_reviewer_sees_runs_but_no_start_button(live_server, page, page_problems, project):
    run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.REWARD, config={})
    log_in(page, live_server.url, "rev", PASSWORD, start="/training/")
    assert page.locator(f"a[href='/training/runs/{run.pk}/']").count() == 1
    assert page.locator("text=Settings…").count() == 0 and page.locator("text=Retrain now").count() == 0
    page.click(f"a[href='/training/runs/{run.pk}/']")
    page.wait_for_url(re.compile(rf"/training/runs/{run.pk}/$"))
    assert page.locator("#cancel-run").count() == 0
    assert page_problems == []
