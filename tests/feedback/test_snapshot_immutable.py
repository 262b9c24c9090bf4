"""A snapshot's rows are fixed when it is made: every reader (the API export, the exports page, the
`export_preferences` command's files, a training run) gets the same bytes forever, and those bytes are what its
sha256 (the X-Snapshot-Sha256 header) covers — whatever is adjudicated, marked gold, re-trusted, revised, imported
or re-configured afterwards. And a revision racing snapshot creation either lands before the snapshot reads or is
refused: no snapshot ever pins a judgement whose ranking then changes.
"""

import gzip
import hashlib
import json
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from core.exceptions import Conflict
from feedback import exports, importing, services
from feedback.models import Assignment, ComparisonTask, Judgement, Membership, PreferenceSnapshot
from feedback.services import snapshots
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from training import services as training_services
from training.runners.base import RunContext
from training.runners.reward import snapshot_rows as training_snapshot_rows
from tests.training.factories import make_run


def judge(project, person, models_best_first):
    """Lease the next task for `person` and rank its completions by model name, best first."""
    held = services.next_task(project=project, annotator=person)
    model_of = dict(held.task.completions.values_list("id", "model_name"))
    by_model = {model_of[cid]: label for label, cid in held.label_map().items()}
    services.submit_judgement(task=held.task, annotator=person, ranking=[[by_model[m]] for m in models_best_first])
    return held.task


@pytest.fixture
def scene(db, settings, tmp_path):
    """Four tasks of two completions (m0, m1), overlap 3: task 0 unanimous for m0, tasks 1–2 split 2:1 for m0
    (carol alone for m1, so trust or a reviewer can turn them), task 3 open with alice's judgement alone."""
    settings.EXPORT_DIR = tmp_path / "exports"
    project = ProjectFactory(slug="frozen", completions_per_task=2, overlap=3)
    make_tasks(project, 4, k=2)
    alice, bob, carol = (make_member(project) for _ in range(3))
    for person in (alice, bob, carol):
        for task_index in range(3):
            judge(project, person, ["m1", "m0"] if person is carol and task_index else ["m0", "m1"])
    judge(project, alice, ["m0", "m1"])
    tasks = list(ComparisonTask.objects.filter(project=project).order_by("id"))
    assert [t.status for t in tasks] == ["complete"] * 3 + ["open"]
    return {"project": project, "tasks": tasks, "alice": alice, "bob": bob, "carol": carol,
            "admin": make_member(project, "admin"), "reviewer": make_member(project, "reviewer")}


def completion_of(task, model):
    return task.completions.get(model_name=model).pk


# Each change after the snapshot is one that a user can make through the product.

def adjudicate(scene):
    task = scene["tasks"][1]
    services.adjudicate(task=task, reviewer=scene["reviewer"],
                        ranking=[[completion_of(task, "m1")], [completion_of(task, "m0")]])


def mark_gold(scene):
    task = scene["tasks"][0]
    services.mark_gold(task=task, ranking=[[completion_of(task, "m0")], [completion_of(task, "m1")]])


def change_trust(scene):
    Membership.objects.filter(project=scene["project"], user__in=[scene["alice"], scene["bob"]]).update(trust=0.05)


def recompute_trust(scene):
    Membership.objects.filter(project=scene["project"]).update(trust=0.3)  # then the product's own recomputation
    services.recompute_trust(project=scene["project"])


def revise(scene):
    """A pinned judgement is refused; one made after the snapshot is revised (and must not appear either)."""
    task = scene["tasks"][3]
    held = Assignment.objects.get(task=task, annotator=scene["alice"])
    with pytest.raises(Conflict):
        services.revise_judgement(task=task, annotator=scene["alice"], ranking=[[label] for label in "ba"])
    assert Judgement.objects.get(assignment=held).ranking[0] == [completion_of(task, "m0")]
    late = make_member(scene["project"])
    assert judge(scene["project"], late, ["m0", "m1"]) == task
    services.revise_judgement(task=task, annotator=late, ranking=[["b"], ["a"]])


def consensus_settings(scene):
    services.update_project(project=scene["project"], overlap=5, max_overlap=8, agreement_threshold=0.9,
                            gold_rate=0.3)


def chat_prompt(scene):
    """A chat prompt makes every row of the project conversational: not those of a snapshot already made."""
    row = importing.clean_row({"id": "chat-1", "prompt": [{"role": "user", "content": "Hi?"}],
                               "completions": [{"text": "Hello.", "model": "m0"}, {"text": "Yo.", "model": "m1"}]}, 1)
    services.import_prompts(project=scene["project"], rows=[row])


CHANGES = [adjudicate, mark_gold, change_trust, recompute_trust, revise, consensus_settings, chat_prompt]


def api_export(scene, **params):
    client = APIClient()
    client.force_authenticate(scene["admin"])
    response = client.get(f"/api/v1/projects/{scene['project'].slug}/export/", params)
    assert response.status_code == 200
    return int(response["X-Snapshot-Id"]), response["X-Snapshot-Sha256"], b"".join(response.streaming_content)


def page_download(scene, snapshot_id, name="rows.jsonl"):
    client = Client()
    client.force_login(scene["admin"])
    response = client.get(f"/p/{scene['project'].slug}/exports/{snapshot_id}/download/", {"file": name})
    assert response.status_code == 200, response.content[:300]
    return response["X-Snapshot-Sha256"], b"".join(response.streaming_content)


def training_rows(scene, snapshot_id):
    snapshot = PreferenceSnapshot.objects.get(pk=snapshot_id)
    run = make_run(project=scene["project"], kind="reward", snapshot=snapshot)
    _, train, test = training_snapshot_rows(RunContext(run=run, config=None))
    return train, test


def split(body: bytes) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in body.splitlines()]
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]


@pytest.mark.django_db
@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__)
def test_every_reader_gets_the_same_bytes_after_a_change(scene, change, tmp_path):
    # Three doors make snapshots: the API export (plain and trusted-only) and the command's files.
    plain_id, plain_sha, plain_body = api_export(scene, test_fraction="0.5")
    trusted_id, trusted_sha, trusted_body = api_export(scene, only_trusted="true", test_fraction="0.5")
    call_command("export_preferences", project="frozen", out=str(tmp_path / "files"), test_fraction=0.5, verbosity=0)
    files = PreferenceSnapshot.objects.exclude(pk__in=[plain_id, trusted_id]).get()
    file_bytes = {name: (tmp_path / "files" / name).read_bytes() for name in ("train.jsonl", "test.jsonl")}
    assert len(plain_body.splitlines()) == 4 and len(trusted_body.splitlines()) == 4  # one pair per judged task
    # The header is the sha256 of the bytes the download returned: a client can check what it got.
    assert hashlib.sha256(plain_body).hexdigest() == plain_sha
    assert hashlib.sha256(trusted_body).hexdigest() == trusted_sha
    before = {
        "page": [page_download(scene, pk) for pk in (plain_id, trusted_id, files.pk)],
        "training": [training_rows(scene, pk) for pk in (plain_id, trusted_id, files.pk)],
        "stream": [b"".join(snapshots.stored_lines(PreferenceSnapshot.objects.get(pk=pk)))
                   for pk in (plain_id, trusted_id, files.pk)],
    }
    assert before["page"][0] == (plain_sha, plain_body) and before["page"][1] == (trusted_sha, trusted_body)
    assert before["training"][0] == split(plain_body)
    # The command's files hold the snapshot's stored rows, split by split.
    files_train, files_test = split(before["page"][2][1])
    assert file_bytes["train.jsonl"] == b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in files_train)
    assert file_bytes["test.jsonl"] == b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in files_test)

    change(scene)

    after = {
        "page": [page_download(scene, pk) for pk in (plain_id, trusted_id, files.pk)],
        "training": [training_rows(scene, pk) for pk in (plain_id, trusted_id, files.pk)],
        "stream": [b"".join(snapshots.stored_lines(PreferenceSnapshot.objects.get(pk=pk)))
                   for pk in (plain_id, trusted_id, files.pk)],
    }
    assert after == before
    for name, content in file_bytes.items():
        assert page_download(scene, files.pk, name) == (files.sha256, content)
    # The change is real: a snapshot made now holds other rows (except for the changes that may not alter rows).
    _, _, now_body = api_export(scene, test_fraction="0.5")
    if change not in (revise, consensus_settings, recompute_trust):
        assert [{k: v for k, v in json.loads(line).items() if k != "snapshot"} for line in now_body.splitlines()] != [
            {k: v for k, v in json.loads(line).items() if k != "snapshot"} for line in plain_body.splitlines()]


@pytest.mark.django_db
def test_the_trusted_only_snapshot_keeps_its_judgements_when_trust_falls(scene):
    """Trust below the threshold would drop alice's and bob's judgements from a new trusted-only export."""
    snapshot_id, sha, body = api_export(scene, only_trusted="true")
    change_trust(scene)
    assert page_download(scene, snapshot_id) == (sha, body)
    assert len(api_export(scene, only_trusted="true")[2].splitlines()) == 3  # carol's judgements alone now


@pytest.mark.django_db
def test_stored_rows_that_no_longer_match_the_hash_are_refused_to_training(scene):
    snapshot = services.create_snapshot(project=scene["project"])
    chunk = snapshot.row_chunks.get()
    tampered = gzip.decompress(bytes(chunk.jsonl_gz)).replace(b'"m0"', b'"mX"', 1)
    type(chunk).objects.filter(pk=chunk.pk).update(jsonl_gz=gzip.compress(tampered))
    with pytest.raises(snapshots.SnapshotRowsCorrupt):
        snapshots.split_rows(snapshot)


@pytest.mark.django_db
def test_a_snapshot_made_before_rows_were_stored_is_fixed_on_its_first_read(scene):
    """A legacy snapshot (no stored rows): its first read stores them; later changes no longer reach it."""
    made = services.create_snapshot(project=scene["project"])
    made.row_chunks.all().delete()
    PreferenceSnapshot.objects.filter(pk=made.pk).update(rows_stored=False, sha256=made.judgements_sha256)
    sha, body = page_download(scene, made.pk)
    assert hashlib.sha256(body).hexdigest() == sha != made.judgements_sha256
    adjudicate(scene)
    assert page_download(scene, made.pk) == (sha, body)


# --- revisions racing snapshots ----------------------------------------------------------------------------------

RACE_TASKS = 4
RACE_ROUNDS = 15
REVISIONS_CAP = 400  # a reviser stops at its first refusal; this only bounds a broken run


def _race_scene():
    project = ProjectFactory(completions_per_task=2, overlap=2)
    tasks = make_tasks(project, RACE_TASKS, k=2)
    people = [make_member(project) for _ in range(RACE_TASKS)]
    # One judgement per task (each person skips the others'), so every task stays open (revisable), one pair each.
    for person, task in zip(people, tasks):
        while (held := services.next_task(project=project, annotator=person)).task_id != task.pk:
            services.skip_task(task=held.task, annotator=person)
        services.submit_judgement(task=held.task, annotator=person, ranking=[["a"], ["b"]])
    assert set(ComparisonTask.objects.filter(project=project).values_list("status", flat=True)) == {"open"}
    return project, people


def _run_threads(targets):
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target):
        try:
            start.wait()
            target()
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]


def _race_once() -> dict:
    """Annotators flip their judgements as fast as they can while one snapshot is made; each stops at its
    first refusal (the snapshot pinned its judgement) or once the snapshot is made and one more try was answered.
    The snapshot starts once a first revision landed, so it is made while the others keep coming."""
    project, people = _race_scene()
    outcomes = {"revised": 0, "refused": 0}
    lock, made, revising = threading.Lock(), threading.Event(), threading.Event()
    task_of = {person.pk: Judgement.objects.get(annotator=person).task for person in people}

    def reviser(person):
        def run():
            task = task_of[person.pk]
            for i in range(REVISIONS_CAP):
                done = made.is_set()
                try:
                    services.revise_judgement(task=task, annotator=person,
                                              ranking=[[lab] for lab in ("ba" if i % 2 == 0 else "ab")])
                except Conflict:
                    with lock:
                        outcomes["refused"] += 1
                    return
                with lock:
                    outcomes["revised"] += 1
                revising.set()
                if done:
                    return
        return run

    def snapshotter():
        revising.wait(timeout=60)  # the snapshot is made while revisions are landing
        services.create_snapshot(project=project)
        made.set()

    _run_threads([reviser(p) for p in people] + [snapshotter])
    snapshot = PreferenceSnapshot.objects.get(project=project, state=PreferenceSnapshot.State.COMPLETE)
    current = {j.pk: j for j in Judgement.objects.filter(task__project=project).select_related("task__prompt")}
    model_of = dict(ComparisonTask.completions.through.objects.filter(comparisontask__project=project)
                    .values_list("completion_id", "completion__model_name"))
    body = b"".join(snapshots.stored_lines(snapshot))
    assert hashlib.sha256(body).hexdigest() == snapshot.sha256
    pinned = [pk for first, last in snapshot.judgement_ids for pk in range(first, last + 1)]
    assert sorted(pinned) == sorted(current)  # the snapshot pins every judgement
    # The pinned judgements' rankings now are the ones the snapshot pinned ...
    digest = hashlib.sha256()
    for pk in sorted(pinned):
        digest.update(json.dumps([pk, current[pk].ranking], separators=(",", ":")).encode())
    assert digest.hexdigest() == snapshot.judgements_sha256
    # ... and the ones its rows say: each task's one judge put the row's chosen model first.
    chosen = {row["prompt_id"]: row["chosen_model"] for row in map(json.loads, body.splitlines())}
    assert chosen == {j.task.prompt.external_id: model_of[j.ranking[0][0]] for j in current.values()}
    # And no revision slipped in between its pin and its rows (that would fail a first snapshot and take another).
    assert PreferenceSnapshot.objects.filter(project=project).count() == 1
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_revisions_racing_a_snapshot_never_change_a_pinned_judgement():
    """Many times over: every snapshot's stored rows match its sha256, and the judgements it pins still hold
    exactly the rankings its rows and its judgements_sha256 say — a revision landed before it read, or was refused."""
    totals = {"revised": 0, "refused": 0}
    for _ in range(RACE_ROUNDS):
        for key, n in _race_once().items():
            totals[key] += n
    # Both sides of the race happened: revisions landed before snapshots, and others were refused after.
    assert totals["revised"] > 0 and totals["refused"] > 0
