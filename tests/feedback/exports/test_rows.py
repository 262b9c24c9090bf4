"""A snapshot's judgements → TRL preference rows: consensus, trust, confidence, adjudication, filters, the
split by prompt, one shape per export, and the API's stream."""

import json

from feedback import exports, quality, services
from feedback.models import Membership, PreferenceSnapshot
from feedback.services import snapshots
from tests.feedback.factories import judge, make_member, make_tasks


def rows_of(snapshot):
    return list(exports.iter_rows(snapshot))


def test_pairs_consensus_and_trl_columns(judged):
    snapshot = services.create_snapshot(project=judged)
    rows = rows_of(snapshot)
    assert {"prompt", "chosen", "rejected", "margin", "agreement", "n_judgements", "prompt_id", "chosen_model",
            "rejected_model", "snapshot"} <= set(rows[0])
    first = [r for r in rows if r["prompt_id"] == "p0"]
    assert {(r["chosen_model"], r["rejected_model"]) for r in first} == {("m0", "m1"), ("m0", "m2"), ("m1", "m2")}
    assert all(r["agreement"] == 1.0 and r["margin"] == 1.0 and r["n_judgements"] == 2 for r in first)
    second = {(r["chosen_model"], r["rejected_model"]): r for r in rows if r["prompt_id"] == "p1"}
    # m0 vs m1: one vote each way -> no consensus, left out; m1 vs m2: one win, one tie.
    assert ("m0", "m1") not in second and ("m1", "m0") not in second
    assert second[("m1", "m2")]["agreement"] == 0.5 and second[("m1", "m2")]["margin"] == 0.5
    assert second[("m0", "m2")]["agreement"] == 1.0
    assert all(r["snapshot"] == snapshot.pk for r in rows)


def test_trust_weights_the_consensus(judged):
    # Make bob untrusted: on the disputed pair alice's m1 > m0 now wins.
    bob = Membership.objects.filter(project=judged).order_by("-id").first()
    bob.trust = 0.2
    bob.save()
    rows = rows_of(services.create_snapshot(project=judged))
    disputed = [r for r in rows if r["prompt_id"] == "p1" and {r["chosen_model"], r["rejected_model"]} == {"m0", "m1"}]
    # Trust decides the direction, but each of the two judges still disagrees with the other: agreement 0.
    assert [(r["chosen_model"], r["agreement"]) for r in disputed] == [("m1", 0.0)]
    trusted_only = services.create_snapshot(project=judged, filters=exports.ExportFilters(only_trusted=True))
    assert all(r["n_judgements"] == 1 for r in rows_of(trusted_only))


def test_every_pair_carries_the_judges_mean_confidence(judged):
    from feedback.models import Judgement

    first, second = judged.tasks.order_by("id")[:2]
    Judgement.objects.filter(task=first).update(confidence=4)
    Judgement.objects.filter(task=second).order_by("id").filter(pk=second.judgements.order_by("id")[0].pk).update(
        confidence=1)
    rows = rows_of(services.create_snapshot(project=judged))
    assert {r["confidence"] for r in rows if r["prompt_id"] == "p0"} == {4.0}
    assert {r["confidence"] for r in rows if r["prompt_id"] == "p1"} == {1.0}  # only the judge who rated counts
    Judgement.objects.update(confidence=None)
    assert {r["confidence"] for r in rows_of(services.create_snapshot(project=judged))} == {None}


def test_adjudication_decides_but_keeps_judgements(judged, project_admin):
    task = judged.tasks.order_by("id")[1]
    ids = dict(task.completions.values_list("model_name", "id"))
    services.adjudicate(task=task, reviewer=project_admin, ranking=[[ids["m1"]], [ids["m0"]], [ids["m2"]]])
    rows = [r for r in rows_of(services.create_snapshot(project=judged)) if r["prompt_id"] == "p1"]
    assert ("m1", "m0") in {(r["chosen_model"], r["rejected_model"]) for r in rows}
    assert task.judgements.count() == 2


def test_filters_min_agreement_and_flags(judged):
    strict = services.create_snapshot(project=judged, filters=exports.ExportFilters(min_agreement=1.0))
    assert all(r["agreement"] == 1.0 for r in rows_of(strict))
    carol = make_member(judged)
    make_tasks(judged, 3, k=3)  # p0..p1 exist; p2 is new
    judge(judged, carol, [["m2"], ["m1"], ["m0"]], flags=["unsafe"])
    flagged = services.create_snapshot(project=judged, filters=exports.ExportFilters(drop_flagged=True))
    assert "p2" not in {r["prompt_id"] for r in rows_of(flagged)}
    everything = services.create_snapshot(project=judged)
    assert "p2" in {r["prompt_id"] for r in rows_of(everything)}


def test_since_snapshot_and_stable_hash(judged):
    first = services.create_snapshot(project=judged)
    again = services.create_snapshot(project=judged)
    # The same judgements, the same judgements_sha256 (sha256 covers the rows' bytes, which name the snapshot).
    assert first.judgements_sha256 == again.judgements_sha256 and first.judgement_ids == again.judgement_ids
    newer = services.create_snapshot(project=judged, filters=exports.ExportFilters(since_snapshot=first.pk))
    assert newer.judgement_ids == [] and rows_of(newer) == []
    assert newer.judgements_sha256 != first.judgements_sha256


def test_split_is_by_prompt():
    keys = [f"prompt-{i}" for i in range(2000)]
    splits = {k: quality.split_of(k, test_fraction=0.2) for k in keys}
    assert 0.15 < sum(v == "test" for v in splits.values()) / len(keys) < 0.25
    assert splits == {k: quality.split_of(k, test_fraction=0.2) for k in keys}  # stable


class TestExportApi:
    def test_admin_streams_jsonl(self, judged, project_admin):
        from rest_framework.test import APIClient

        client = APIClient()
        client.force_authenticate(project_admin)
        response = client.get(f"/api/v1/projects/{judged.slug}/export/?format=jsonl&min_agreement=0.9")
        assert response.status_code == 200
        rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
        assert rows and all(r["agreement"] >= 0.9 for r in rows)
        assert response["X-Snapshot-Id"] == str(PreferenceSnapshot.objects.get().pk)

    def test_bad_filter_is_400_and_annotators_are_refused(self, judged, project_admin, annotator_client):
        from rest_framework.test import APIClient

        client = APIClient()
        client.force_authenticate(project_admin)
        response = client.get(f"/api/v1/projects/{judged.pk}/export/?min_agreement=7")
        assert response.status_code == 400 and "min_agreement" in response.json()
        assert annotator_client.get(f"/api/v1/projects/{judged.pk}/export/").status_code == 403
        assert not PreferenceSnapshot.objects.exists()


def test_one_shape_per_export_when_chats_and_text_mix(project):
    from feedback import importing

    rows = [importing.clean_row({"id": "t", "prompt": "plain", "completions": ["a", "b"]}, 1),
            importing.clean_row({"id": "c", "prompt": [{"role": "user", "content": "chat"}], "completions": ["c", "d"]}, 2)]
    services.import_prompts(project=project, rows=rows)
    person = make_member(project)
    while (held := services.next_task(project=project, annotator=person)) is not None:
        services.submit_judgement(task=held.task, annotator=person, ranking=[["a"], ["b"]])
    exported = rows_of(services.create_snapshot(project=project))
    assert len(exported) == 2
    for row in exported:
        assert isinstance(row["prompt"], list) and row["chosen"][0]["role"] == "assistant"


def test_client_disconnecting_mid_stream_leaves_everything_intact(judged, project_admin):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(project_admin)
    snapshot = services.create_snapshot(project=judged)
    stream = snapshots.stored_lines(snapshot)  # what the API response iterates
    assert json.loads(next(stream))["snapshot"] == snapshot.pk
    stream.close()  # the server closes the response's iterator when the client goes away
    snapshot.refresh_from_db()
    assert snapshot.counts["judgements"] == 4 and len(snapshot.sha256) == 64
    again = client.get(f"/api/v1/projects/{judged.slug}/export/")
    assert len(b"".join(again.streaming_content).splitlines()) == 5
    assert PreferenceSnapshot.objects.filter(judgements_sha256=snapshot.judgements_sha256).count() == 2
