"""The registry page says which policy each project samples from, and each policy's human win rate against its
project's active policy with the 95% interval."""

import re

import pytest
from django.test import Client

from tests.feedback.factories import ProjectFactory, make_member
from tests.training.test_promotion import duel, judge, register  # noqa: F401  (the fixture and helpers)

pytestmark = pytest.mark.django_db


def registry_html(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/training/")
    assert response.status_code == 200
    return response.content.decode()


def row_of(html: str, name: str) -> str:
    return re.search(rf"<tr><td>{re.escape(name)}</td>.*?</tr>", html, re.S).group(0)


def test_registry_shows_the_policy_in_use_and_live_win_rates(duel):  # noqa: F811
    project, active, candidate, tasks = duel
    tasks(10)
    judge(project, 10, candidate_wins=7)
    html = registry_html(make_member(project, "reviewer"))
    in_use = re.search(r'id="policies-in-use".*?</table>', html, re.S).group(0)
    assert re.search(rf"<td>{project.slug}</td><td>policy-active</td>", in_use)
    candidate_row = row_of(html, "policy-candidate")
    # 7 of 10: Wilson 95% interval 0.40–0.89.
    assert "0.700 (0.40–0.89, n=10) vs policy-active" in candidate_row
    assert project.slug in row_of(html, "policy-active")  # used by the project


def test_a_policy_without_head_to_head_judgements_says_so(duel):  # noqa: F811
    project, active, candidate, tasks = duel
    html = registry_html(make_member(project, "reviewer"))
    assert "no head-to-head judgements yet vs policy-active" in row_of(html, "policy-candidate")


def test_other_projects_policies_are_not_listed(duel):  # noqa: F811
    project, active, candidate, tasks = duel
    other = ProjectFactory()
    register(other, "policy-elsewhere", activate=True)
    html = registry_html(make_member(project, "reviewer"))
    assert "policy-elsewhere" not in html and other.slug not in html
