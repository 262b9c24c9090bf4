"""The registry page says which policy each project samples from, and each candidate's head-to-head standing
against its project's active policy: the sequential test's verdict in words with its evidence (tasks, win rate, the
confidence sequence, the e-value) and each annotator's vote; the run page says the same for the policy it produced."""

import re

import pytest
from django.test import Client

from tests.feedback.factories import ProjectFactory, make_member
from tests.training.test_promotion import duel, judge, register  # noqa: F401  (the fixture and helpers)
from training.models import TrainingRun
from training.promotion import decide_promotions

pytestmark = pytest.mark.django_db


def page(user, url="/training/") -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def row_of(html: str, name: str) -> str:
    """The registry row of a version (its cell may hold a nested per-annotator table)."""
    start = html.index(f"<tr><td>{name}</td>")
    return html[start:html.index("<td><code>", start)]


def test_registry_shows_the_policy_in_use_and_the_live_verdict_with_its_evidence(duel):  # noqa: F811
    project, active, candidate, tasks = duel()
    tasks(10)
    first, second = make_member(project), make_member(project)
    judge(project, "wwwwl", first)
    judge(project, "wwlll", second)
    html = page(make_member(project, "reviewer"))
    in_use = re.search(r'id="policies-in-use".*?</table>', html, re.S).group(0)
    assert re.search(rf"<td>{project.slug}</td><td>policy-active</td>", in_use)
    candidate_row = row_of(html, "policy-candidate")
    assert "waiting: not yet shown better or worse — win rate 0.600 over 10 tasks" in candidate_row
    assert re.search(r"confidence sequence \[0\.\d+, [01]\.\d+\], e-value [\d.]+ \(promotes at 40\)", candidate_row)
    assert "vs policy-active" in candidate_row and "10 tasks, 10 judgements" in candidate_row
    # per annotator: 4 of 5 and 2 of 5
    assert f"<tr><td>{first.username}</td><td>5</td><td>0.800</td></tr>" in candidate_row
    assert f"<tr><td>{second.username}</td><td>5</td><td>0.400</td></tr>" in candidate_row
    assert project.slug in row_of(html, "policy-active")  # used by the project


def test_a_candidate_without_closed_tasks_waits_in_words(duel):  # noqa: F811
    project, active, candidate, tasks = duel()
    html = page(make_member(project, "reviewer"))
    assert "waiting: no head-to-head task has closed yet" in row_of(html, "policy-candidate")


def test_a_promoted_policy_shows_the_vote_that_promoted_it_on_the_registry_and_its_run_page(duel):  # noqa: F811
    project, active, candidate, tasks = duel()
    run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.PPO, config={},
                                     state=TrainingRun.State.SUCCEEDED, produced_version=candidate)
    tasks(40)
    judge(project, "wwwwl" * 8)
    [(_, verdict)] = decide_promotions(project=project)
    assert verdict == "promote"
    reviewer = make_member(project, "reviewer")
    row = row_of(page(reviewer), "policy-candidate")
    assert "promoted: shown better than the active policy" in row and "(as of the last decision)" in row
    run_page = page(reviewer, f"/training/runs/{run.pk}/")
    block = re.search(r'id="run-head-to-head".*?</div>\s*</div>', run_page, re.S).group(0)
    assert "policy-candidate" in block and "promoted: shown better than the active policy" in block
    assert "per annotator (1)" in block


def test_other_projects_policies_are_not_listed(duel):  # noqa: F811
    project, active, candidate, tasks = duel()
    other = ProjectFactory()
    register(other, "policy-elsewhere", activate=True)
    html = page(make_member(project, "reviewer"))
    assert "policy-elsewhere" not in html and other.slug not in html
