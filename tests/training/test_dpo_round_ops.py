"""Operating iterative-DPO rounds: every move of a round is on the audit trail (opened, finished, a refused finish,
ended), `manage.py dpo_round --wait` waits for people and then trains, the /training/ page lists the project's rounds
(and only its own), and superusers read rounds in the Django admin without changing them there.

The tiny models and settings are those of test_dpo_round.py."""

import threading
import time
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.test import Client

from core.exceptions import Conflict
from core.models import AuditEvent
from tests.feedback.factories import ProjectFactory, UserFactory, make_member, make_tasks
from tests.training.test_dpo_round import ROUND, judge_everything, models  # noqa: F401  (`models` is a fixture)
from training import services, tasks
from training.models import DPORound, ModelVersion, TrainingRun
from tests.training.factories import make_run

pytestmark = pytest.mark.django_db
T = AuditEvent.Type


def round_audit(dpo_round) -> list[tuple]:
    """(event type, actor id, extra) of the round's audit rows, oldest first."""
    rows = AuditEvent.objects.filter(target=f"dpo_round:{dpo_round.pk}").order_by("pk")
    return [(row.event_type, row.actor_id, row.extra) for row in rows]


def test_opening_finishing_refusing_and_ending_a_round_are_audited(project, models):  # noqa: F811
    admin = make_member(project, "admin")
    dpo_round, sample_run = services.advance_dpo_round(project=project, config=ROUND, actor=admin, enqueue=False)
    opened = round_audit(dpo_round)
    assert [(kind, actor) for kind, actor, _ in opened] == [(T.DPO_ROUND_OPENED, admin.pk)]
    assert opened[0][2]["run"] == sample_run.pk and opened[0][2]["budget"] == ROUND["budget"]
    assert AuditEvent.objects.get(event_type=T.DPO_ROUND_OPENED).project == project

    # A click while it samples is refused, and the refusal is on record (the change itself rolled back).
    web = Client()
    web.force_login(admin)
    assert web.post(f"/training/projects/{project.slug}/dpo-round/").status_code == 409
    # Published but not judged: finishing is refused, audited with the reason; nothing else changes.
    services.record_round_sampled(dpo_round=dpo_round, tasks=make_tasks(project, 2), rows_path="",
                                  counts={"human_pairs": 2, "model_pairs": 0})
    runs_before = TrainingRun.objects.count()
    with pytest.raises(Conflict):
        services.advance_dpo_round(project=project, actor=admin, enqueue=False)
    assert TrainingRun.objects.count() == runs_before
    # The maintenance tick asks every minute: its refusals are not written.
    assert tasks.run_maintenance()["dpo_rounds_finished"] == []
    refused = round_audit(dpo_round)[1:]
    assert [(kind, actor) for kind, actor, _ in refused] == [(T.DPO_ROUND_FINISH_REFUSED, admin.pk)] * 2
    assert "still sampling" in refused[0][2]["reason"] and refused[0][2]["state"] == DPORound.State.SAMPLING
    assert "waits for judgements: 0 of 2" in refused[1][2]["reason"]

    judge_everything(project)
    _, train_run = services.advance_dpo_round(project=project, actor=admin, enqueue=False)
    finished = round_audit(dpo_round)[3:]
    assert [(kind, actor) for kind, actor, _ in finished] == [(T.DPO_ROUND_FINISHED, admin.pk)]
    assert finished[0][2] == {"run": train_run.pk, "tasks_complete": 2, "tasks": 2}

    services.end_round(dpo_round=dpo_round, state=DPORound.State.REJECTED, error="held-out accuracy at chance")
    ended = round_audit(dpo_round)[4:]
    assert [(kind, actor) for kind, actor, _ in ended] == [(T.DPO_ROUND_ENDED, None)]  # the worker ends rounds
    assert ended[0][2]["state"] == DPORound.State.REJECTED and "chance" in ended[0][2]["error"]


def round_settings(tmp_path) -> str:
    path = tmp_path / "round.yaml"
    path.write_text(yaml.safe_dump(ROUND))
    return str(path)


# The command trains in a thread of its own (and people judge in another): committed data, so transactional tests.
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_dpo_round_wait_samples_waits_for_people_then_trains(project, models, tmp_path):  # noqa: F811
    out = StringIO()
    judged, errors = threading.Event(), []

    def people():
        """Annotators who start once the command says it is waiting for them."""
        try:
            deadline = time.monotonic() + 300
            while "waiting for judgements:" not in out.getvalue():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the command never waited; it said:\n{out.getvalue()}")
                time.sleep(0.05)
            judge_everything(project)
            judged.set()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    crowd = threading.Thread(target=people, daemon=True)
    crowd.start()
    call_command("dpo_round", "--project", project.slug, "--wait", "--poll-seconds", "0.05",
                 "--config", round_settings(tmp_path), stdout=out, verbosity=0)
    crowd.join(timeout=60)
    assert not errors, errors
    assert judged.is_set()
    dpo_round = DPORound.objects.get(project=project)
    said = out.getvalue()
    # It returned normally (exit status 0) and said what happened, in order: sampled, waited, trained, registered.
    # (None of the round's tasks is held out, so no pair labelled by people judges the policy: the DPO gate
    # rejects it, and the version is registered as rejected, for the record.)
    assert dpo_round.state == DPORound.State.REJECTED, (dpo_round.error, said)
    assert "no held-out pair labelled by people" in dpo_round.error
    sampled = f"DPO round {dpo_round.pk}: run {dpo_round.sample_run_id} succeeded; the round is waiting for judgements"
    waited = f"waiting for judgements: 0 of {ROUND['budget']} tasks complete, {ROUND['budget']} needed"
    trained = f"DPO round {dpo_round.pk}: run {dpo_round.train_run_id} failed; the round is rejected by the dpo gate"
    assert said.index(sampled) < said.index(waited) < said.index(trained), said
    version = dpo_round.train_run.produced_version
    assert f"registered model version {version.pk} ({version.name}, rejected)" in said
    assert f"pairs from people: {ROUND['budget']} published, {ROUND['budget']} trained" in said


@pytest.mark.django_db(transaction=True)
def test_a_failed_round_makes_dpo_round_exit_with_an_error(project, models, tmp_path):  # noqa: F811
    """The sampling run dies (no prompt to sample from): the command exits non-zero naming why, the round failed."""
    from django.core.management.base import CommandError

    from feedback.models import Prompt

    Prompt.objects.filter(project=project).delete()
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("dpo_round", "--project", project.slug, "--wait", "--config", round_settings(tmp_path),
                     stdout=out, verbosity=0)
    dpo_round = DPORound.objects.get(project=project)
    assert dpo_round.state == DPORound.State.FAILED and dpo_round.error in str(failed.value)
    assert "no prompts" in dpo_round.error
    assert "the round is failed" in out.getvalue()


def a_round(project, tmp_path, state=DPORound.State.WAITING, **counts) -> DPORound:
    policy = ModelVersion.objects.create(project=project, name=f"policy-{project.slug}", kind=ModelVersion.Kind.POLICY,
                                         path=str(tmp_path / project.slug), sha256="d" * 64)
    run = make_run(project=project, kind=TrainingRun.Kind.DPO_ROUND)
    return DPORound.objects.create(project=project, policy=policy, k=2, budget=4, state=state, counts=counts,
                                   sample_run=run)


def test_the_training_page_lists_the_projects_rounds_to_its_members_only(project, tmp_path):
    mine = a_round(project, tmp_path, human_pairs=4, model_pairs=11)
    other = ProjectFactory(slug="other-tenant")
    theirs = a_round(other, tmp_path, state=DPORound.State.SAMPLING)
    client = Client()
    client.force_login(make_member(project, "reviewer"))
    page = client.get("/training/").content.decode()
    row = page.split(f'id="dpo-round-row-{mine.pk}"')[1].split("</tr>")[0]
    assert "Waiting for judgements" in row and ">4<" in row and ">11<" in row
    assert f'href="/training/runs/{mine.sample_run_id}/"' in row
    assert f'id="dpo-round-row-{theirs.pk}"' not in page and "other-tenant" not in page

    stranger = Client()
    stranger.force_login(make_member(other, "admin"))
    seen = stranger.get("/training/").content.decode()
    assert f'id="dpo-round-row-{theirs.pk}"' in seen and f'id="dpo-round-row-{mine.pk}"' not in seen
    assert project.slug not in seen
    annotator = Client()  # annotators watch no runs, so no rounds either
    annotator.force_login(make_member(project, "annotator"))
    assert f'dpo-round-row-{mine.pk}' not in annotator.get("/training/").content.decode()


def test_superusers_read_rounds_in_the_admin_but_cannot_change_them(project, tmp_path):
    dpo_round = a_round(project, tmp_path, human_pairs=4, model_pairs=11)
    client = Client()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    listing = client.get("/admin/training/dporound/")
    assert listing.status_code == 200 and project.slug in listing.content.decode()
    assert client.get("/admin/training/dporound/", {"q": project.slug}).content.decode().count(
        f"/admin/training/dporound/{dpo_round.pk}/change/") >= 1
    assert client.get(f"/admin/training/dporound/{dpo_round.pk}/change/").status_code == 200
    changed = client.post(f"/admin/training/dporound/{dpo_round.pk}/change/", {"state": "done", "budget": 99})
    assert changed.status_code == 403
    assert client.get("/admin/training/dporound/add/").status_code == 403
    assert client.post(f"/admin/training/dporound/{dpo_round.pk}/delete/", {"post": "yes"}).status_code == 403
    dpo_round.refresh_from_db()
    assert (dpo_round.state, dpo_round.budget) == (DPORound.State.WAITING, 4)
