"""Preference snapshots: pinning the judgements an export or a training run holds, materialising their rows once,
and reading those rows back, byte for byte, forever.

Making one: a short transaction locks the project row (`revise_judgement` takes the same lock before it looks for
a pinning snapshot; on SQLite every transaction is IMMEDIATE, i.e. holds the write lock) and commits a pending
snapshot that pins the judgements (ids, and a sha256 of ids and rankings). From then on a revision of a pinned
judgement is refused, so the rows, read next outside any transaction (`exports.iter_rows`), hold exactly the pinned
rankings. They are stored as gzip-compressed JSON lines in `SnapshotRowChunk`s, each chunk its own short write, and
a last locked transaction checks that the pin did not move, records `sha256` (of those exact bytes) and completes
the snapshot. Nothing changed later — adjudications, gold marks, trust, revisions, consensus settings, new
prompts — reaches a stored row.

Every reader goes through `stored_lines` / `stored_rows` / `split_rows`: the API export, the exports page, the
`export_preferences` command (its files are written from the stored rows, outside any transaction) and the
training runners. A file export's snapshot stays pending until its files were written whole, then complete; a
failure (full disk, anything) marks it failed and leaves no `.partial` file behind. Only complete snapshots count
as covering their judgements (`--since-snapshot`); a failed one pins nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator

from django.conf import settings
from django.db import transaction

from core.audit import record_audit
from core.db import lock_rows, retry_transient
from core.events import announce
from core.exceptions import Conflict
from core.models import AuditEvent
from feedback import exports
from feedback.exports import ExportFilters, ExportStats
from feedback.models import PreferenceSnapshot, Project, SnapshotRowChunk

SNAPSHOT_CREATED = "snapshot.created"
ERROR_LIMIT = 2000
ROWS_PER_CHUNK = 2000  # a chunk of typical rows is ~1 MB of JSON, ~100–200 KB compressed
PIN_ATTEMPTS = 3


class SnapshotRowsCorrupt(Exception):
    """The stored rows do not match the snapshot's sha256 (a damaged database): nothing may learn from them."""

    code = "snapshot_rows_corrupt"


class SnapshotUnsettled(Conflict):
    code = "snapshot_unsettled"
    default_message = "The project's judgements kept changing while the snapshot read them; try again."


def create_snapshot(*, project: Project, actor=None, filters: ExportFilters | None = None,
                    only_tasks: frozenset[int] | None = None) -> PreferenceSnapshot:
    """A committed, complete snapshot without files, its rows stored (read them with `stored_lines`,
    `stored_rows`, `split_rows`). Training runs and the streamed API export use this; with `only_tasks` it
    pins and holds those tasks' judgements alone (an iterative-DPO round's)."""
    snapshot, _ = _record_snapshot(project=project, actor=actor, filters=filters or ExportFilters(),
                                   state=PreferenceSnapshot.State.COMPLETE, only_tasks=only_tasks)
    return snapshot


def export_preferences(
    *, project: Project, out_dir: str | Path | None = None, fmt: str = "jsonl", filters: ExportFilters | None = None,
    actor=None, progress=None,
) -> tuple[PreferenceSnapshot, ExportStats]:
    """Snapshot the project's judgements and write its files (default: EXPORT_DIR/snapshot-<id>) from the rows
    the snapshot stored.

    Returns the complete snapshot and the export's statistics; on failure the snapshot is marked failed
    and the error propagates.
    """
    exports.check_format(fmt)  # before a snapshot is recorded
    snapshot, stats = _record_snapshot(project=project, actor=actor, filters=filters or ExportFilters(),
                                       state=PreferenceSnapshot.State.PENDING, durable=True)
    out = Path(out_dir) if out_dir is not None else Path(settings.EXPORT_DIR) / f"snapshot-{snapshot.pk}"
    try:
        exports.write_export(snapshot, out, fmt=fmt, progress=progress, rows=stored_rows(snapshot), stats=stats)
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


# --- reading: every door reads the stored bytes ------------------------------------------------------------------

def ensure_rows_stored(snapshot: PreferenceSnapshot) -> PreferenceSnapshot:
    """The snapshot with its rows stored: call before sending its sha256 anywhere (a legacy snapshot gets its
    rows, and so its sha256, on its first read)."""
    return snapshot if snapshot.rows_stored else materialise_legacy(snapshot)


def stored_lines(snapshot: PreferenceSnapshot, *, verify: bool = False) -> Iterator[bytes]:
    """The snapshot's rows as JSONL lines, exactly the bytes its sha256 covers, one chunk in memory at a time.
    With `verify`, raises SnapshotRowsCorrupt after the last line when the bytes do not match the sha256."""
    snapshot = ensure_rows_stored(snapshot)
    return _lines(snapshot, verify)


def _lines(snapshot: PreferenceSnapshot, verify: bool) -> Iterator[bytes]:
    digest = hashlib.sha256()
    chunks = (SnapshotRowChunk.objects.filter(snapshot_id=snapshot.pk).order_by("seq")
              .values_list("jsonl_gz", flat=True).iterator(chunk_size=4))
    for compressed in chunks:
        data = gzip.decompress(bytes(compressed))
        digest.update(data)
        yield from data.splitlines(keepends=True)
    if verify and digest.hexdigest() != snapshot.sha256:
        raise SnapshotRowsCorrupt(f"snapshot {snapshot.pk}: stored rows do not match sha256 {snapshot.sha256}")


def stored_rows(snapshot: PreferenceSnapshot) -> Iterator[dict]:
    """The snapshot's rows as dicts, in the order they were made (verified against the sha256)."""
    for line in stored_lines(snapshot, verify=True):
        yield json.loads(line)


def split_rows(snapshot: PreferenceSnapshot) -> tuple[list[dict], list[dict]]:
    """The snapshot's train and test rows, as stored."""
    train, test = [], []
    for row in stored_rows(snapshot):
        (train if row["split"] == "train" else test).append(row)
    return train, test


def materialise_legacy(snapshot: PreferenceSnapshot) -> PreferenceSnapshot:
    """A snapshot made before rows were stored: store its rows now, once (from its JSONL files when it has them,
    else computed from the database as it stands), and set its sha256 to theirs. Its ids-and-rankings sha256 was
    kept in `judgements_sha256` by the migration."""
    with transaction.atomic():
        lock_rows(Project.objects.filter(pk=snapshot.project_id)).get()
        locked = lock_rows(PreferenceSnapshot.objects.filter(pk=snapshot.pk)).get()
        if not locked.rows_stored:
            folder = Path(locked.path) if locked.path else None
            if folder is not None and all((folder / f"{split}.jsonl").is_file() for split in exports.SPLITS):
                rows = (json.loads(line) for split in exports.SPLITS
                        for line in (folder / f"{split}.jsonl").open(encoding="utf-8") if line.strip())
            else:
                rows = exports.iter_rows(locked)
            locked.sha256, count = _store_rows(locked, rows)
            locked.rows_stored = True
            locked.counts = {**locked.counts, "rows": count}
            locked.save(update_fields=["sha256", "rows_stored", "counts"])
    return locked


# --- making ------------------------------------------------------------------------------------------------------

def _pin(project: Project, filters: ExportFilters, only_tasks: frozenset[int] | None) -> dict:
    """Judgement ids (as runs of consecutive ids) and the sha256 of ids and rankings: the same judgements give
    the same value, whenever and wherever the snapshot is taken."""
    digest = hashlib.sha256()
    id_ranges: list[list[int]] = []  # runs [first, last] of consecutive ids: compact for a million judgements
    judgements = filters.judgements(project)
    if only_tasks is not None:
        judgements = judgements.filter(task_id__in=sorted(only_tasks))
    rows = judgements.order_by("id").values_list("id", "ranking").iterator(chunk_size=5000)
    for judgement_id, ranking in rows:
        if id_ranges and id_ranges[-1][1] == judgement_id - 1:
            id_ranges[-1][1] = judgement_id
        else:
            id_ranges.append([judgement_id, judgement_id])
        digest.update(json.dumps([judgement_id, ranking], separators=(",", ":")).encode())
    count = sum(last - first + 1 for first, last in id_ranges)
    return {"judgement_ids": id_ranges, "judgements_sha256": digest.hexdigest(),
            "counts": {"judgements": count, "max_judgement_id": id_ranges[-1][1] if id_ranges else 0}}


def _store_rows(snapshot: PreferenceSnapshot, rows: Iterable[dict]) -> tuple[str, int]:
    """Write the rows as compressed JSONL chunks; returns the sha256 of the uncompressed bytes and the row count.
    Each line is spelled as the files and the old stream spelled it (`json.dumps(row, ensure_ascii=False)`)."""
    digest = hashlib.sha256()
    buffer: list[bytes] = []
    seq = count = 0

    def flush():
        nonlocal seq
        data = b"".join(buffer)
        digest.update(data)
        SnapshotRowChunk.objects.create(snapshot=snapshot, seq=seq, rows=len(buffer),
                                        jsonl_gz=gzip.compress(data, compresslevel=6, mtime=0))
        seq += 1
        buffer.clear()

    for row in rows:
        buffer.append((json.dumps(row, ensure_ascii=False) + "\n").encode())
        count += 1
        if len(buffer) >= ROWS_PER_CHUNK:
            flush()
    if buffer:
        flush()
    return digest.hexdigest(), count


def _record_snapshot(*, project: Project, actor, filters: ExportFilters, state: str, durable: bool = False,
                     only_tasks: frozenset[int] | None = None) -> tuple[PreferenceSnapshot, ExportStats]:
    """Pin (a short locked transaction), store the rows (reads outside any transaction, each chunk its own short
    write: a large snapshot never holds SQLite's write lock for long), then check the pin and finish. A pin that
    moved while the rows were read — a judgement committed late with a lower id, a trust change under
    `only_trusted` — fails that snapshot and takes another, up to PIN_ATTEMPTS times."""
    filters_dict = filters.as_dict()
    if only_tasks is not None:
        filters_dict["tasks"] = sorted(only_tasks)
    for _ in range(PIN_ATTEMPTS):
        snapshot, pinned = _pin_snapshot(project=project, actor=actor, filters=filters, filters_dict=filters_dict,
                                         only_tasks=only_tasks, durable=durable)
        try:
            stats = ExportStats()
            sha256, count = _store_rows(snapshot, exports.iter_rows(snapshot, stats, only_tasks=only_tasks))
            if _finish(snapshot, pinned=pinned, filters=filters, only_tasks=only_tasks, sha256=sha256, count=count,
                       stats=stats, state=state, durable=durable):
                return snapshot, stats
        except BaseException as exc:
            _mark_failed(snapshot, exc)
            raise
        _mark_failed(snapshot, SnapshotUnsettled())
    raise SnapshotUnsettled()


@retry_transient
def _pin_snapshot(*, project, actor, filters, filters_dict, only_tasks, durable) -> tuple[PreferenceSnapshot, dict]:
    with transaction.atomic(durable=durable):
        # Serialises with revise_judgement, which takes this lock before it checks whether a snapshot pins the
        # judgement: a revision commits before this pin reads, or sees this (pending) snapshot and is refused.
        lock_rows(Project.objects.filter(pk=project.pk)).get()
        pinned = _pin(project, filters, only_tasks)
        snapshot = PreferenceSnapshot.objects.create(
            project=project, created_by=actor if getattr(actor, "is_authenticated", False) else None,
            filters=filters_dict, state=PreferenceSnapshot.State.PENDING, sha256="", **pinned,
        )
        record_audit(actor=actor, event_type=AuditEvent.Type.PREFERENCES_EXPORTED, project=project,
                     target=f"snapshot:{snapshot.pk}",
                     extra={"filters": filters_dict, "judgements": pinned["counts"]["judgements"]})
    return snapshot, pinned


@retry_transient
def _finish(snapshot, *, pinned, filters, only_tasks, sha256, count, stats, state, durable) -> bool:
    """Record the stored rows' sha256 and counts, if the judgements the rows were read from are still exactly
    the pinned ones (False: they moved; the caller fails this snapshot)."""
    with transaction.atomic(durable=durable):
        lock_rows(Project.objects.filter(pk=snapshot.project_id)).get()
        if _pin(snapshot.project, filters, only_tasks) != pinned:
            return False
        snapshot.sha256, snapshot.rows_stored, snapshot.state = sha256, True, state
        snapshot.counts = {**pinned["counts"], **stats.counts(), "rows": count}
        snapshot.agreement = stats.mean_agreement()
        snapshot.save(update_fields=["sha256", "rows_stored", "state", "counts", "agreement"])
        if state == PreferenceSnapshot.State.COMPLETE:
            _announce(snapshot)
    return True


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
    SnapshotRowChunk.objects.filter(snapshot_id=snapshot.pk).delete()  # a failed snapshot is never read
