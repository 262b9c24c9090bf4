"""Abandoning an iterative-DPO round whose judgements never come: the round fails with who abandoned it and why,
its open tasks leave the queue (judged tasks and every judgement stay), an audit row is written, and the project can
start a new round. Only a round waiting for judgements can be abandoned (409 naming the state otherwise), only by
the project's admins, from the API, the /training/ page or `manage.py dpo_round --abandon`.

The tiny models and settings are those of test_dpo_round.py."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

from core.exceptions import ApplicationError, Conflict
from core.models import AuditEvent
from feedback import services as feedback_services
from feedback.models import ComparisonTask, Judgement
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from tests.training.test_dpo_round import ROUND, models  # noqa: F401  (`models` is a fixture)
from tests.training.test_dpo_round_ops import a_round
from training import services
from training.models import DPORound

pytestmark = pytest.mark.django_db
ABANDONED = AuditEvent.Type.DPO_ROUND_ABANDONED


def judge(task, person):
    held = feedback_services.next_task(project=task.project, annotator=person)
    assert held is not None and held.task_id == task.pk
    labels = sorted(held.label_map())
    feedback_services.submit_judgement(task=held.task, annotator=person, ranking=[[label] for label in labels])


def abandoned_rows(dpo_round):
    return list(AuditEvent.objects.filter(event_type=ABANDONED, target=f"dpo_round:{dpo_round.pk}"))


def test_abandoning_frees_the_project_withdraws_open_tasks_and_keeps_judgements(project, models):  # noqa: F811
    admin = make_member(project, "admin")
    dpo_round, _ = services.advance_dpo_round(project=project, config=ROUND, actor=admin, enqueue=False)
    judged, half, untouched, outside = make_tasks(project, 4)
    services.record_round_sampled(dpo_round=dpo_round, tasks=[judged, half, untouched], rows_path="",
                                  counts={"human_pairs": 3, "model_pairs": 0})
    for _ in range(project.overlap):  # both judges: complete
        judge(judged, make_member(project))
    judge(half, make_member(project))  # one of its two judgements
    holder = make_member(project)  # holds a live lease on the half-judged task when the round is abandoned
    assert feedback_services.next_task(project=project, annotator=holder).task_id == half.pk

    abandoned = services.abandon_dpo_round(dpo_round=dpo_round, actor=admin, reason="the annotators left")

    assert abandoned.state == DPORound.State.FAILED and abandoned.finished_at is not None
    assert abandoned.error == f"abandoned by {admin.username}: the annotators left"
    statuses = dict(ComparisonTask.objects.values_list("pk", "status"))
    assert statuses == {judged.pk: "complete", half.pk: "cancelled", untouched.pk: "cancelled", outside.pk: "open"}
    assert Judgement.objects.filter(task=judged).count() == 2 and Judgement.objects.filter(task=half).count() == 1
    # Annotators stop getting the round's tasks: the lease holder and a newcomer are both served the other task.
    assert feedback_services.next_task(project=project, annotator=holder).task_id == outside.pk
    assert feedback_services.next_task(project=project, annotator=make_member(project)).task_id == outside.pk
    with pytest.raises(ApplicationError) as late:  # the dropped lease no longer takes a judgement
        feedback_services.submit_judgement(task=half, annotator=holder, ranking=[["a"], ["b"]])
    assert late.value.status_code == 403 and Judgement.objects.filter(task=half).count() == 1

    [row] = abandoned_rows(dpo_round)
    assert (row.actor, row.project) == (admin, project)
    assert row.extra == {"reason": "the annotators left", "tasks": 3, "tasks_complete": 1, "tasks_cancelled": 2}

    # The project is free again: the next click opens a new round.
    fresh, _ = services.advance_dpo_round(project=project, config=ROUND, actor=admin, enqueue=False)
    assert fresh.pk != dpo_round.pk and fresh.state == DPORound.State.SAMPLING


@pytest.mark.parametrize("state", [DPORound.State.SAMPLING, DPORound.State.TRAINING, DPORound.State.DONE,
                                   DPORound.State.REJECTED, DPORound.State.FAILED])
def test_a_round_not_waiting_for_judgements_refuses_with_409_naming_its_state(project, tmp_path, state):
    dpo_round = a_round(project, tmp_path, state=state)
    task = make_tasks(project, 1)[0]
    dpo_round.tasks.set([task])
    label = dpo_round.get_state_display().lower()
    admin = make_member(project, "admin")
    with pytest.raises(Conflict, match=f"DPO round {dpo_round.pk} is {label}"):
        services.abandon_dpo_round(dpo_round=dpo_round, actor=admin, reason="x")
    api = APIClient()
    api.force_authenticate(admin)
    answer = api.post(f"/api/v1/dpo-rounds/{dpo_round.pk}/abandon/", {"reason": "x"}, format="json")
    assert answer.status_code == 409 and label in answer.json()["detail"]
    web = Client()
    web.force_login(admin)
    page = web.post(f"/training/rounds/{dpo_round.pk}/abandon/", {"reason": "x"})
    assert page.status_code == 409 and label in page.content.decode()
    assert f'id="abandon-round-{dpo_round.pk}"' not in web.get("/training/").content.decode()
    if state in DPORound.OPEN_STATES:
        with pytest.raises(CommandError, match=label):
            call_command("dpo_round", "--project", project.slug, "--abandon", stdout=StringIO())
    dpo_round.refresh_from_db()
    task.refresh_from_db()
    assert (dpo_round.state, dpo_round.error, task.status) == (state, "", ComparisonTask.Status.OPEN)
    assert abandoned_rows(dpo_round) == []


def test_only_the_projects_admins_abandon_it_from_the_api_and_the_page(project, tmp_path):
    dpo_round = a_round(project, tmp_path)
    task = make_tasks(project, 1)[0]
    dpo_round.tasks.set([task])
    url, page_url = f"/api/v1/dpo-rounds/{dpo_round.pk}/abandon/", f"/training/rounds/{dpo_round.pk}/abandon/"
    other = ProjectFactory(slug="other-tenant")
    refused = {"annotator": (make_member(project, "annotator"), 404), "reviewer": (make_member(project, "reviewer"), 403),
               "foreign admin": (make_member(other, "admin"), 404)}
    for who, (user, status) in refused.items():
        api, web = APIClient(), Client()
        api.force_authenticate(user)
        web.force_login(user)
        assert api.post(url, {"reason": who}, format="json").status_code == status, who
        assert web.post(page_url, {"reason": who}).status_code == status, who
        assert f'id="abandon-round-{dpo_round.pk}"' not in web.get("/training/").content.decode(), who
    assert APIClient().post(url, format="json").status_code in {401, 403}
    assert Client().post(page_url).status_code == 302  # to the login page
    dpo_round.refresh_from_db()
    task.refresh_from_db()
    assert (dpo_round.state, task.status) == (DPORound.State.WAITING, ComparisonTask.Status.OPEN)
    assert abandoned_rows(dpo_round) == []

    # The project's admin sees the button beside the waiting round and abandons it from the page.
    admin = make_member(project, "admin")
    web = Client()
    web.force_login(admin)
    page = web.get("/training/").content.decode()
    row = page.split(f'id="dpo-round-row-{dpo_round.pk}"')[1].split("</tr>")[0]
    assert f'id="abandon-round-{dpo_round.pk}"' in row and 'name="csrfmiddlewaretoken"' in row and "confirm(" in row
    done = web.post(page_url, {"reason": "no annotators this month"})
    assert done.status_code == 302 and done["Location"] == "/training/"
    dpo_round.refresh_from_db()
    task.refresh_from_db()
    assert dpo_round.state == DPORound.State.FAILED and "no annotators this month" in dpo_round.error
    assert task.status == ComparisonTask.Status.CANCELLED
    assert [row.actor for row in abandoned_rows(dpo_round)] == [admin]


def test_the_api_abandons_for_an_admin_and_refuses_bad_input(project, tmp_path):
    dpo_round = a_round(project, tmp_path)
    admin = make_member(project, "admin")
    api = APIClient()
    api.force_authenticate(admin)
    url = f"/api/v1/dpo-rounds/{dpo_round.pk}/abandon/"
    assert api.post("/api/v1/dpo-rounds/999999/abandon/", format="json").status_code == 404
    assert api.post("/api/v1/dpo-rounds/abc/abandon/", format="json").status_code == 404
    assert api.post("/api/v1/dpo-rounds/99999999999999999999999/abandon/", format="json").status_code == 404
    assert api.get(url).status_code == 405
    for reason in ("x" * 501, "bad\x00byte", ["a list"], {"an": "object"}):
        answer = api.post(url, {"reason": reason}, format="json")
        assert answer.status_code == 400 and "reason" in answer.json().get("errors", answer.json()), reason
    web = Client()
    web.force_login(admin)
    assert web.post("/training/rounds/999999/abandon/").status_code == 404
    assert web.post("/training/rounds/abc/abandon/").status_code == 404
    assert web.get(f"/training/rounds/{dpo_round.pk}/abandon/").status_code == 405
    assert web.post(f"/training/rounds/{dpo_round.pk}/abandon/", {"reason": "x" * 501}).status_code == 400
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.WAITING and abandoned_rows(dpo_round) == []

    answer = api.post(url, {}, format="json")  # no reason is fine
    assert answer.status_code == 200, answer.content
    assert answer.json()["state"] == "failed" and answer.json()["error"] == f"abandoned by {admin.username}: " \
                                                                            "no reason given"
    again = api.post(url, {}, format="json")
    assert again.status_code == 409 and "failed" in again.json()["detail"]


def test_the_command_abandons_the_waiting_round(project, tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("dpo_round", "--project", "no-such-project", "--abandon", stdout=StringIO())
    with pytest.raises(CommandError, match="no open DPO round"):
        call_command("dpo_round", "--project", project.slug, "--abandon", stdout=StringIO())
    dpo_round = a_round(project, tmp_path)
    judged, open_task = make_tasks(project, 2)
    dpo_round.tasks.set([judged, open_task])
    for _ in range(project.overlap):
        judge(judged, make_member(project))
    out = StringIO()
    call_command("dpo_round", "--project", project.slug, "--abandon", "--reason", "budget cut", stdout=out)
    dpo_round.refresh_from_db()
    assert dpo_round.state == DPORound.State.FAILED
    assert dpo_round.error == "abandoned by an operator (manage.py): budget cut"
    assert f"DPO round {dpo_round.pk} abandoned by an operator (manage.py): budget cut; 1 open tasks cancelled, " \
           "1 judged kept" in out.getvalue()
    [row] = abandoned_rows(dpo_round)
    assert row.actor is None and row.extra["reason"] == "budget cut"
    with pytest.raises(CommandError, match="no open DPO round"):
        call_command("dpo_round", "--project", project.slug, "--abandon", stdout=StringIO())
