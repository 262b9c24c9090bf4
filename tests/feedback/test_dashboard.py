import pytest
from django.test import Client

from feedback import services
from tests.feedback.factories import make_member, make_tasks
from tests.feedback.test_exports import judge


@pytest.fixture
def busy_project(project):
    make_tasks(project, 4, k=3)
    gold = project.tasks.order_by("id").last()
    ids = dict(gold.completions.values_list("model_name", "id"))
    services.mark_gold(task=gold, ranking=[[ids["m0"]], [ids["m1"]], [ids["m2"]]])
    alice, bob = make_member(project, username="alice"), make_member(project, username="bob")
    for person, order in ((alice, [["m0"], ["m1"], ["m2"]]), (bob, [["m0"], ["m2"], ["m1"]])):
        for _ in range(3):
            judge(project, person, order)
    project.gold_rate = 1.0
    project.save()
    judge(project, alice, [["m0"], ["m1"], ["m2"]])  # gold: right
    judge(project, bob, [["m2"], ["m1"], ["m0"]])  # gold: all pairs wrong
    return project


def test_dashboard_figures(busy_project):
    from feedback import dashboard

    data = dashboard.build(project=busy_project)
    by_name = {a["annotator"]: a for a in data["annotators"]}
    assert by_name["alice"]["judgements"] == 4 and by_name["bob"]["judgements"] == 4
    assert by_name["alice"]["gold_accuracy"] == 1.0 and by_name["bob"]["gold_accuracy"] == 0.0
    # On every task they agree on m0 first and disagree on m1 vs m2: 2 of 3 decided pairs match the other.
    assert by_name["alice"]["agreement"] == pytest.approx(2 / 3)
    assert data["stats"]["judgements_done"] == 6
    assert sum(n for _, n in data["charts"]["per_hour"]) == 8
    assert data["length_bias"]["decided"] >= 0


def test_dashboard_page_for_reviewers_only(busy_project):
    reviewer = make_member(busy_project, "reviewer")
    annotator = make_member(busy_project, "annotator")
    client = Client()
    client.force_login(annotator)
    assert client.get(f"/p/{busy_project.slug}/dashboard/").status_code == 404
    client.force_login(reviewer)
    page = client.get(f"/p/{busy_project.slug}/dashboard/")
    assert page.status_code == 200
    assert b"chart-leaderboard" in page.content and b"alice" in page.content and b"cdn" not in page.content.lower()
