"""The exports page through Django's test client: create a snapshot with a format and filters, see it in the
table, download its files byte for byte with its sha256; bad input and permissions."""

import hashlib
import json
from pathlib import Path

import pytest
from django.test import Client

from feedback import services
from feedback.models import PreferenceSnapshot
from feedback.services import snapshots
from tests.feedback.factories import ProjectFactory, make_member, make_tasks
from tests.feedback.test_review_pages import judge_every_task

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def scene(db, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    project = ProjectFactory(slug="exported", completions_per_task=2, overlap=2)
    make_tasks(project, 12, k=2)
    for _ in range(2):
        judge_every_task(project, make_member(project, "annotator"), lambda i, ids: [[ids[0]], [ids[1]]],
                         lambda i: ["unsafe"] if i == 0 else [])
    return {"project": project, "admin": make_member(project, "admin"), "reviewer": make_member(project, "reviewer")}


def form(**overrides):
    data = {"format": "jsonl", "min_agreement": "0", "include_flagged": "on", "trust_threshold": "0.5",
            "test_fraction": "0.25", "split_seed": "0"}
    return {**data, **overrides}


def download(client, snapshot, name):
    response = client.get(f"/p/exported/exports/{snapshot.pk}/download/", {"file": name})
    assert response.status_code == 200, response.content[:300]
    return response, b"".join(response.streaming_content)


@pytest.mark.parametrize("fmt, ext", [("jsonl", "jsonl"), ("parquet", "parquet")])
def test_admin_creates_a_snapshot_sees_it_and_downloads_its_files(scene, fmt, ext):
    client = client_for(scene["admin"])
    response = client.post("/p/exported/exports/", form(format=fmt))
    assert response.status_code == 302 and response["Location"] == "/p/exported/exports/"
    snapshot = PreferenceSnapshot.objects.get(project=scene["project"])
    assert snapshot.state == PreferenceSnapshot.State.COMPLETE and snapshot.filters["test_fraction"] == 0.25
    html = client.get("/p/exported/exports/").content.decode()
    assert f'id="snapshot-{snapshot.pk}"' in html and snapshot.sha256[:12] in html and snapshot.sha256 in html
    assert f"{snapshot.counts['train_pairs']} / {snapshot.counts['test_pairs']}" in html
    assert snapshot.counts["train_pairs"] + snapshot.counts["test_pairs"] == 12
    for name in (f"train.{ext}", f"test.{ext}", "README.md"):
        assert f"download/?file={name}" in html
        response, body = download(client, snapshot, name)
        on_disk = (Path(snapshot.path) / name).read_bytes()
        assert body == on_disk and hashlib.sha256(body).digest() == hashlib.sha256(on_disk).digest()
        assert response["X-Snapshot-Sha256"] == snapshot.sha256
        assert f'filename="exported-snapshot-{snapshot.pk}-{name}"' in response["Content-Disposition"]
    assert download(client, snapshot, f"train.{ext}")[0]["Content-Type"].startswith(
        "application/jsonl" if fmt == "jsonl" else "application/vnd.apache.parquet")


def test_filters_reach_the_snapshot(scene):
    client = client_for(scene["admin"])
    models = ["m0", "m1"]
    client.post("/p/exported/exports/", form(include_flagged="", min_agreement="0.5", models=models, split_seed="7"))
    snapshot = PreferenceSnapshot.objects.get(project=scene["project"])
    assert snapshot.filters | {"drop_flagged": True, "min_agreement": 0.5, "models": models, "split_seed": 7} == snapshot.filters
    _, body = download(client, snapshot, "train.jsonl")
    _, test_body = download(client, snapshot, "test.jsonl")
    rows = [json.loads(line) for line in (body + test_body).decode().splitlines()]
    assert len(rows) == 11  # the flagged task's pair is left out
    # "since" a complete snapshot: nothing new since, so no judgement at all.
    client.post("/p/exported/exports/", form(since_snapshot=str(snapshot.pk)))
    newest = PreferenceSnapshot.objects.filter(project=scene["project"]).order_by("-pk").first()
    assert newest.counts["judgements"] == 0 and newest.filters["since_snapshot"] == snapshot.pk


def test_a_snapshot_without_files_downloads_its_rows(scene):
    snapshot = services.create_snapshot(project=scene["project"])
    client = client_for(scene["admin"])
    assert "download/?file=rows.jsonl" in client.get("/p/exported/exports/").content.decode()
    response, body = download(client, snapshot, "rows.jsonl")
    assert body == b"".join(snapshots.stored_lines(snapshot)) and len(body.splitlines()) == 12
    assert response["X-Snapshot-Sha256"] == snapshot.sha256


@pytest.mark.parametrize("overrides, message", [
    ({"min_agreement": "2"}, "less than or equal to 1"), ({"min_agreement": "nan"}, "Enter a number"),
    ({"test_fraction": "1"}, "less than or equal to 0.99"), ({"format": "csv"}, "Select a valid choice"),
    ({"split_seed": "٣"}, "plain digits"), ({"since_snapshot": "987654"}, "Select a valid choice"),
    ({"since_snapshot": "9" * 30}, "Select a valid choice"), ({"since_snapshot": "x\x00"}, "Null characters are not allowed"),
    ({"models": ["nope"]}, "Select a valid choice"), ({"trust_threshold": "-1"}, "greater than or equal to 0"),
])
def test_bad_input_is_a_400_naming_the_field(scene, overrides, message):
    response = client_for(scene["admin"]).post("/p/exported/exports/", form(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    start = html.index(f'id="field-{next(iter(overrides))}"')  # the error sits in the field's own block
    assert message in html[start : html.find('<div class="field', start)]
    assert not PreferenceSnapshot.objects.exists()


def test_downloads_refuse_unknown_files_and_unfinished_snapshots(scene, tmp_path):
    client = client_for(scene["admin"])
    client.post("/p/exported/exports/", form())
    snapshot = PreferenceSnapshot.objects.get()
    for name in ("../../etc/passwd", "train.parquet", "\x00", "x" * 5000):
        response = client.get(f"/p/exported/exports/{snapshot.pk}/download/", {"file": name})
        assert response.status_code == 400 and b"file:" in response.content
    for state in (PreferenceSnapshot.State.PENDING, PreferenceSnapshot.State.FAILED):
        PreferenceSnapshot.objects.filter(pk=snapshot.pk).update(state=state)
        assert client.get(f"/p/exported/exports/{snapshot.pk}/download/", {"file": "train.jsonl"}).status_code == 404
    PreferenceSnapshot.objects.filter(pk=snapshot.pk).update(state=PreferenceSnapshot.State.FAILED, error="OSError: disk full")
    html = client.get("/p/exported/exports/").content.decode()
    assert "failed" in html and "disk full" in html


def test_only_the_projects_admins_use_the_page(scene):
    snapshot = services.create_snapshot(project=scene["project"])
    page, dl = "/p/exported/exports/", f"/p/exported/exports/{snapshot.pk}/download/"
    for user in (scene["reviewer"], make_member(scene["project"], "annotator")):
        client = client_for(user)
        assert client.get(page).status_code == 403 and client.get(dl).status_code == 403
        assert client.post(page, form()).status_code == 403
    elsewhere = ProjectFactory(slug="elsewhere")
    outsider = make_member(elsewhere, "admin")
    client = client_for(outsider)
    assert client.get(page).status_code == 404 and client.get(dl).status_code == 404
    assert client.post(page, form()).status_code == 404
    # Another project's snapshot under the admin's own project: 404, as a missing one.
    assert client.get(f"/p/elsewhere/exports/{snapshot.pk}/download/").status_code == 404
    assert PreferenceSnapshot.objects.count() == 1
    assert Client().get(page).status_code == 302
