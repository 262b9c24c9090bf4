import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from feedback import exports, quality, services
from feedback.models import Membership, PreferenceSnapshot
from feedback.services import snapshots
from tests.feedback.factories import make_member, make_tasks


def judge(project, person, ranking_by_model, flags=()):
    """Lease the next task for `person` and rank its completions by model name (e.g. [["m0"], ["m1", "m2"]])."""
    held = services.next_task(project=project, annotator=person)
    by_id = dict(held.task.completions.values_list("id", "model_name"))
    label_of = {by_id[cid]: label for label, cid in held.label_map().items()}
    ranking = [[label_of[m] for m in group] for group in ranking_by_model]
    services.submit_judgement(task=held.task, annotator=person, ranking=ranking, flags=flags)
    return held.task


@pytest.fixture
def judged(project):
    """Two tasks of 3 completions (m0, m1, m2), each judged by two annotators."""
    make_tasks(project, 2, k=3)
    alice, bob = make_member(project), make_member(project)
    for person in (alice, bob):
        judge(project, person, [["m0"], ["m1"], ["m2"]])
    # Second task: alice prefers m1 over m0, bob the reverse; both put m2 last, tied by bob with m1.
    judge(project, alice, [["m1"], ["m0"], ["m2"]])
    judge(project, bob, [["m0"], ["m1", "m2"]])
    return project


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


def test_command_writes_files_card_and_snapshot(judged, tmp_path):
    out = tmp_path / "export"
    call_command("export_preferences", "--project", judged.slug, "--out", str(out), "--test-fraction", "0.5", verbosity=0)
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == 5
    assert not {r["prompt_id"] for r in train} & {r["prompt_id"] for r in test}
    card = (out / "README.md").read_text()
    snapshot = PreferenceSnapshot.objects.get()
    assert snapshot.sha256 in card and "| pairs (train / test) | 5 " in card
    assert snapshot.counts["pairs"] == 5 and snapshot.path == str(out)


def test_parquet_export(judged, tmp_path):
    import pyarrow.parquet as pq

    call_command("export_preferences", "--project", judged.slug, "--out", str(tmp_path), "--format", "parquet",
                 "--test-fraction", "0", verbosity=0)
    table = pq.read_table(tmp_path / "train.parquet")
    assert table.num_rows == 5 and {"prompt", "chosen", "rejected", "margin"} <= set(table.column_names)


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


class TestFileExportSnapshots:
    """A file export's snapshot commits first, and covers its judgements only once its files were written whole."""

    def test_written_export_is_complete_and_announced(self, judged, tmp_path):
        snapshot, stats = services.export_preferences(project=judged, out_dir=tmp_path / "out")
        snapshot.refresh_from_db()
        assert snapshot.state == PreferenceSnapshot.State.COMPLETE and snapshot.path == str(tmp_path / "out")
        assert snapshot.counts["pairs"] == stats.counts()["pairs"] == 5
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "test.jsonl", "train.jsonl"]

    def test_full_disk_marks_it_failed_and_leaves_no_partial_files(self, judged, tmp_path, monkeypatch):
        def full_disk(rows, out_dir):
            (out_dir / ".train.jsonl.partial").write_text(json.dumps(next(iter(rows))) + "\n")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(exports, "_write_jsonl", full_disk)
        with pytest.raises(OSError):
            services.export_preferences(project=judged, out_dir=tmp_path)
        snapshot = PreferenceSnapshot.objects.get()
        assert snapshot.state == PreferenceSnapshot.State.FAILED and "No space left" in snapshot.error
        assert list(tmp_path.iterdir()) == []

    def test_since_snapshot_accepts_complete_snapshots_only(self, judged, tmp_path, monkeypatch):
        monkeypatch.setattr(exports, "_write_jsonl", lambda rows, out_dir: (_ for _ in ()).throw(OSError("disk")))
        with pytest.raises(OSError):
            services.export_preferences(project=judged, out_dir=tmp_path)
        failed = PreferenceSnapshot.objects.get()
        with pytest.raises(ValidationError) as excinfo:
            services.create_snapshot(project=judged, filters=exports.ExportFilters(since_snapshot=failed.pk))
        assert "since_snapshot" in excinfo.value.message_dict
        complete = services.create_snapshot(project=judged)
        newer = services.create_snapshot(project=judged, filters=exports.ExportFilters(since_snapshot=complete.pk))
        assert newer.counts["judgements"] == 0

    def test_rows_for_training_come_from_the_database_and_from_complete_files_alike(self, judged, tmp_path):
        from_db = snapshots.split_rows(services.create_snapshot(project=judged))
        snapshot, _ = services.export_preferences(project=judged, out_dir=tmp_path)
        from_files = snapshots.split_rows(snapshot)
        strip = lambda rows: sorted((r["prompt_id"], r["chosen_model"], r["rejected_model"]) for r in rows)  # noqa: E731
        assert [strip(rows) for rows in from_db] == [strip(rows) for rows in from_files]
        assert sum(map(len, from_files)) == 5


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_card_load_command_works_with_an_empty_test_split(judged, tmp_path, monkeypatch, fmt):
    """Every format writes a file per split (an empty test split too), and the command in the card's code
    block, run as it is from the export directory, loads what was written."""
    import re

    out = tmp_path / fmt
    call_command("export_preferences", "--project", judged.slug, "--out", str(out), "--format", fmt,
                 "--test-fraction", "0", verbosity=0)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    assert (out / f"train.{ext}").exists() and (out / f"test.{ext}").exists()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        empty = pq.read_table(out / "test.parquet")
        assert empty.num_rows == 0 and empty.schema == pq.read_table(out / "train.parquet").schema
    card = (out / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert "data_files" in code and '"test"' not in code
    monkeypatch.chdir(out)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  (the card's own text)
    assert set(namespace["ds"]) == {"train"} and namespace["ds"]["train"].num_rows == 5
    assert {"prompt", "chosen", "rejected"} <= set(namespace["ds"]["train"].column_names)
    if fmt == "hf":
        assert namespace["ds_saved"]["train"].num_rows == 5


def test_card_names_both_splits_when_both_have_rows(judged, tmp_path):
    snapshot, stats = services.export_preferences(project=judged, out_dir=tmp_path, fmt="parquet",
                                                  filters=exports.ExportFilters(test_fraction=0.5))
    code = (tmp_path / "README.md").read_text().split("```python\n")[1].split("```")[0]
    for split in ("train", "test"):
        assert (f'"{split}": "{split}.parquet"' in code) == bool(stats.pairs[split])
