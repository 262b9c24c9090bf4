import pytest
from django.test import Client

from feedback import selectors, services
from tests.feedback.factories import make_member, make_tasks
from tests.feedback.factories import judge


# Completion lengths by model: m0 is mid-length, m1 the longest, m2 the shortest.
TEXTS = {0: "ten chars.", 1: "twenty characters...", 2: "five."}


@pytest.fixture
def busy_project(project):
    make_tasks(project, 4, k=3, texts=TEXTS)
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
    data = selectors.dashboard_figures(project=busy_project)
    by_name = {a["annotator"]: a for a in data["annotators"]}
    assert by_name["alice"]["judgements"] == 4 and by_name["bob"]["judgements"] == 4
    assert by_name["alice"]["gold_accuracy"] == 1.0 and by_name["bob"]["gold_accuracy"] == 0.0
    # On every task they agree on m0 first and disagree on m1 vs m2: 2 of 3 decided pairs match the other.
    assert by_name["alice"]["agreement"] == pytest.approx(2 / 3)
    assert data["stats"]["judgements_done"] == 6
    assert sum(n for _, n in data["charts"]["per_hour"]) == 8
    # Trust after the gold task: alice 3/3 right -> (2*3 + 4) / (2*3 + 5) = 10/11, bob 0/3 -> 4/11.
    # So on each of the 3 non-gold tasks the consensus is m0 > m1, m0 > m2, m1 > m2 (alice outweighs bob on
    # m1 vs m2): 9 decided pairs; the longer completion wins m0 > m2 and m1 > m2, not m0 > m1: 6 of 9.
    trust = dict(busy_project.memberships.values_list("user__username", "trust"))
    assert trust == {"alice": pytest.approx(10 / 11), "bob": pytest.approx(4 / 11)}
    bias = data["length_bias"]
    assert bias["decided"] == 9 and bias["share"] == pytest.approx(6 / 9)
    # Wilson 95% interval of 6/9, by hand: centre 0.6168, half-width 0.2626.
    assert bias["lower"] == pytest.approx(0.3542, abs=1e-3) and bias["upper"] == pytest.approx(0.8794, abs=1e-3)


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


def test_pairwise_agreement_alpha_per_day_and_review(busy_project):
    from feedback.models import Adjudication

    data = selectors.dashboard_figures(project=busy_project)
    assert [(p["a"], p["b"], p["shared_pairs"]) for p in data["annotator_pairs"]] == [("alice", "bob", 9)]
    assert data["annotator_pairs"][0]["agreement"] == pytest.approx(6 / 9)
    assert len(data["alpha_by_day"]) == 1 and data["alpha_by_day"][0][1] is not None

    reviewer = make_member(busy_project, "reviewer")
    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/p/{busy_project.slug}/review/")
    assert page.status_code == 200 and page.content.count(b'id="queue-task-') == 3
    task = busy_project.tasks.filter(is_gold=False).order_by("id").first()
    ids = sorted(task.completions.values_list("id", flat=True))
    bad = client.post(f"/p/{busy_project.slug}/review/{task.pk}/", {"rank_a": "1"})
    assert bad.status_code == 400 and b"Give completion B a rank" in bad.content and not Adjudication.objects.exists()
    client.post(f"/p/{busy_project.slug}/review/{task.pk}/", {"rank_a": "1", "rank_b": "2", "rank_c": "3", "note": "m0 > m1 > m2"})
    adjudication = Adjudication.objects.get()
    assert adjudication.ranking == [[i] for i in ids] and task.judgements.count() == 2
    assert client.get(f"/p/{busy_project.slug}/review/").content.count(b'id="queue-task-') == 2


def test_gold_is_never_revealed_through_the_api(busy_project):
    from rest_framework.test import APIClient

    person = make_member(busy_project)
    client = APIClient()
    client.force_authenticate(person)
    body = client.post(f"/api/v1/projects/{busy_project.slug}/next-task/").json()  # gold_rate is 1.0: a gold task
    assert set(body) == {"task", "project", "prompt", "completions", "lease_expires_at", "lease_token"}
    assert "gold" not in str(body).lower()
    client.post(f"/api/v1/tasks/{body['task']}/judgements/", {"ranking": [["a"], ["b"], ["c"]]}, format="json")
    mine = client.get("/api/v1/judgements/").json()["results"]
    assert len(mine) == 1 and "gold" not in str(mine).lower()


def test_leaderboard_chart_data_is_on_the_elo_scale_with_intervals(busy_project):
    """The chart gets Elo scores (around 1000, not 0…1) with their bootstrap intervals, and an axis spanning them."""
    charts = selectors.dashboard_figures(project=busy_project)["charts"]
    board, axis = charts["leaderboard"], charts["leaderboard_axis"]
    assert board[0]["model"] == "m0"  # m0 wins every judgement
    assert all(m["lower"] <= m["score"] <= m["upper"] for m in board)
    assert any(m["upper"] - m["lower"] > 1 for m in board)  # intervals, not points
    assert sum(m["score"] for m in board) / len(board) == pytest.approx(1000, abs=1)  # Elo anchor, not a 0…1 share
    assert board[0]["score"] > 1000 > board[-1]["score"]
    assert axis["min"] <= min(m["lower"] for m in board) and axis["max"] >= max(m["upper"] for m in board)
    # Elo points, not a 0…1 share; three tasks of two judges leave each score uncertain by hundreds of points, so
    # the axis may reach below 0 (the intervals resample tasks, and never come out narrower than by battle).
    assert axis["min"] < 1000 < axis["max"] and 100 < axis["max"] - axis["min"] < 5000
