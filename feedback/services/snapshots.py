"""Preference snapshots: pinning the judgements an export or a training run holds, and exporting them.

A snapshot row commits first, in a short transaction; export files are written afterwards, outside any
transaction (on SQLite a long export would otherwise hold the database's write lock). A file export's
snapshot is pending until its files were written whole, then complete; a failure (full disk, anything)
marks it failed and leaves no `.partial` file behind. Only complete snapshots count as covering their
judgements (`--since-snapshot`, "the previous snapshot").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.audit import record_audit
from core.events import announce
from core.models import AuditEvent
from feedback import exports
from feedback.exports import ExportFilters, ExportStats
from feedback.models import PreferenceSnapshot, Project

SNAPSHOT_CREATED = "snapshot.created"
ERROR_LIMIT = 2000


def create_snapshot(*, project: Project, actor=None, filters: ExportFilters | None = None) -> PreferenceSnapshot:
    """A committed, complete snapshot without files: its rows are read from the database
    (`exports.iter_rows`, `exports.snapshot_split_rows`, `exports.stream_jsonl`). Training runs and the
    streamed API export use this."""
    return _record_snapshot(project=project, actor=actor, filters=filters or ExportFilters(),
                            state=PreferenceSnapshot.State.COMPLETE)


def export_preferences(
    *, project: Project, out_dir: str | Path | None = None, fmt: str = "jsonl", filters: ExportFilters | None = None,
    actor=None, progress=None,
) -> tuple[PreferenceSnapshot, ExportStats]:
    """Snapshot the project's judgements and write its files (default: EXPORT_DIR/snapshot-<id>).

    Returns the complete snapshot and the export's statistics; on failure the snapshot is marked failed
    and the error propagates.
    """
    exports.check_format(fmt)  # before a snapshot is recorded
    snapshot = _record_snapshot(project=project, actor=actor, filters=filters or ExportFilters(),
                                state=PreferenceSnapshot.State.PENDING, durable=True)
    out = Path(out_dir) if out_dir is not None else Path(settings.EXPORT_DIR) / f"snapshot-{snapshot.pk}"
    try:
        stats = exports.write_export(snapshot, out, fmt=fmt, progress=progress)
    except BaseException as exc:
        _mark_failed(snapshot, exc)
        raise
    return _mark_complete(snapshot, out, stats), stats


def record_split_counts(*, snapshot: PreferenceSnapshot, train_pairs: int, test_pairs: int) -> PreferenceSnapshot:
    """A file-less snapshot's pair counts, once a training run has read its rows (traceability on the registry)."""
    counts = {**snapshot.counts, "pairs": train_pairs + test_pairs, "train_pairs": train_pairs,
              "test_pairs": test_pairs}
    PreferenceSnapshot.objects.filter(pk=snapshot.pk).update(counts=counts)
    snapshot.counts = counts
    return snapshot


def _pin(project: Project, filters: ExportFilters) -> dict:
    """Judgement ids (as runs of consecutive ids) and the sha256 of ids and rankings: the same judgements give
    the same sha256, whenever and wherever the snapshot is taken."""
    digest = hashlib.sha256()
    id_ranges: list[list[int]] = []  # runs [first, last] of consecutive ids: compact for a million judgements
    rows = filters.judgements(project).order_by("id").values_list("id", "ranking").iterator(chunk_size=5000)
    for judgement_id, ranking in rows:
        if id_ranges and id_ranges[-1][1] == judgement_id - 1:
            id_ranges[-1][1] = judgement_id
        else:
            id_ranges.append([judgement_id, judgement_id])
        digest.update(json.dumps([judgement_id, ranking], separators=(",", ":")).encode())
    count = sum(last - first + 1 for first, last in id_ranges)
    return {"judgement_ids": id_ranges, "sha256": digest.hexdigest(),
            "counts": {"judgements": count, "max_judgement_id": id_ranges[-1][1] if id_ranges else 0}}


def _record_snapshot(*, project: Project, actor, filters: ExportFilters, state: str,
                     durable: bool = False) -> PreferenceSnapshot:
    pinned = _pin(project, filters)  # a read: judgement ids only grow, so it needs no write lock
    with transaction.atomic(durable=durable):
        snapshot = PreferenceSnapshot.objects.create(
            project=project, created_by=actor if getattr(actor, "is_authenticated", False) else None,
            filters=filters.as_dict(), state=state, **pinned,
        )
        record_audit(actor=actor, event_type=AuditEvent.Type.PREFERENCES_EXPORTED, project=project,
                     target=f"snapshot:{snapshot.pk}",
                     extra={"filters": filters.as_dict(), "judgements": pinned["counts"]["judgements"]})
        if state == PreferenceSnapshot.State.COMPLETE:
            _announce(snapshot)
    return snapshot


def _announce(snapshot: PreferenceSnapshot) -> None:
    announce(event=SNAPSHOT_CREATED, project=snapshot.project, payload={
        "snapshot": snapshot.pk, "project": snapshot.project.slug, "sha256": snapshot.sha256,
        "judgements": snapshot.counts.get("judgements", 0),
    })


def _mark_complete(snapshot: PreferenceSnapshot, out: Path, stats: ExportStats) -> PreferenceSnapshot:
    with transaction.atomic(durable=True):
        snapshot.path = str(out)
        snapshot.counts = {**snapshot.counts, **stats.counts()}
        snapshot.agreement = stats.mean_agreement()
        snapshot.state = PreferenceSnapshot.State.COMPLETE
        snapshot.save(update_fields=["path", "counts", "agreement", "state"])
        _announce(snapshot)
    return snapshot


def _mark_failed(snapshot: PreferenceSnapshot, exc: BaseException) -> None:
    snapshot.state = PreferenceSnapshot.State.FAILED
    snapshot.error = (f"{type(exc).__name__}: {exc}")[:ERROR_LIMIT]
    PreferenceSnapshot.objects.filter(pk=snapshot.pk).update(state=snapshot.state, error=snapshot.error)
