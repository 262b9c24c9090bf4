"""An export's files: the command, Parquet, and a file export's snapshot (complete only once its files are whole)."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from feedback import exports, services
from feedback.exports import files
from feedback.models import PreferenceSnapshot
from feedback.services import snapshots


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

        monkeypatch.setattr(files, "_write_jsonl", full_disk)
        with pytest.raises(OSError):
            services.export_preferences(project=judged, out_dir=tmp_path)
        snapshot = PreferenceSnapshot.objects.get()
        assert snapshot.state == PreferenceSnapshot.State.FAILED and "No space left" in snapshot.error
        assert list(tmp_path.iterdir()) == []

    def test_since_snapshot_accepts_complete_snapshots_only(self, judged, tmp_path, monkeypatch):
        monkeypatch.setattr(files, "_write_jsonl", lambda rows, out_dir: (_ for _ in ()).throw(OSError("disk")))
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
