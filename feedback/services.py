"""Every write of the annotation platform. Views, admin, commands and jobs call these; nothing else writes.

Queue writes are short transactions. On SQLite each transaction takes the write lock when it starts
(IMMEDIATE, see settings), so writers queue instead of failing; on PostgreSQL candidate tasks are
locked with SKIP LOCKED so concurrent annotators never wait on each other's rows. Either way the
unique constraints (one assignment and one judgement per task and annotator) are the last line of
defence: no judgement is ever lost or stored twice.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.exceptions import ApplicationError, Conflict
from core.db import lock_rows, retry_transient
from feedback import importing, quality
from core.audit import record_audit
from core.models import AuditEvent
from feedback.models import Assignment, ComparisonTask, Completion, Judgement, Membership, Project, Prompt

User = get_user_model()

RANKING_NOT_A_LIST = "Ranking must be a non-empty list of groups of labels, best first, e.g. [[\"a\"], [\"b\", \"c\"]]."
RANKING_BAD_GROUP = "Each ranking group must be a non-empty list of labels; got {group!r}."
RANKING_UNKNOWN_LABEL = "Unknown completion label {label!r}; this task shows {labels}."
RANKING_DUPLICATE_LABEL = "Label {label!r} appears more than once in the ranking."
RANKING_MISSING_LABEL = "Ranking must name every completion exactly once; missing: {labels}."
FLAG_UNKNOWN = "Unknown flag {flag!r}; allowed: {allowed}."
CONFIDENCE_RANGE = "Confidence must be an integer from 1 to 5."
NOT_LEASEHOLDER = "You do not hold a lease on this task. Ask for the next task first."
LEASE_EXPIRED = "Your lease on this task expired and it went back to the pool. Ask for the next task."
ALREADY_JUDGED = "You have already judged this task."
IDEMPOTENCY_KEY_REUSED = "This Idempotency-Key was already used for another task."
COMMENT_TOO_LONG = "Comment is limited to {limit} characters."
NUL_NOT_ALLOWED = "Text must not contain NUL characters."

COMMENT_LIMIT = 5000
CANDIDATES_PER_PICK = 8


# --- audit ---------------------------------------------------------------------------------------


# --- projects and members ----------------------------------------------------------------------


@transaction.atomic
def create_project(
    *, slug: str, name: str = "", instructions: str = "", completions_per_task: int = 2, overlap: int = 3,
    lease_seconds: int = 600, gold_rate: float = 0.0, max_overlap: int | None = None,
    agreement_threshold: float = 0.75, actor=None,
) -> Project:
    project = Project(
        slug=slug, name=name or slug, instructions=instructions, completions_per_task=completions_per_task,
        overlap=overlap, lease_seconds=lease_seconds, gold_rate=gold_rate, max_overlap=max_overlap,
        agreement_threshold=agreement_threshold,
    )
    project.full_clean()
    project.save()
    record_audit(actor=actor, event_type=AuditEvent.Type.PROJECT_CREATED, project=project, target=f"project:{project.pk}")
    return project


ROLE_GROUPS = {
    Membership.Role.ANNOTATOR: "Annotators",
    Membership.Role.REVIEWER: "Reviewers",
    Membership.Role.ADMIN: "Project admins",
}


def ensure_role_groups() -> dict[str, Group]:
    """The Django groups behind the roles, with the model permissions each role needs in the admin."""
    from django.contrib.auth.models import Permission

    groups = {}
    for role, name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        groups[role] = group
    view_codenames = ["view_project", "view_prompt", "view_completion", "view_comparisontask", "view_judgement"]
    groups[Membership.Role.REVIEWER].permissions.set(
        Permission.objects.filter(content_type__app_label="feedback", codename__in=view_codenames)
    )
    groups[Membership.Role.ADMIN].permissions.set(
        Permission.objects.filter(content_type__app_label__in=["feedback", "training"])
    )
    return groups


@transaction.atomic
def add_member(
    *, project: Project, username: str, role: str, password: str | None = None, actor=None
) -> tuple[Membership, Token]:
    """Create the user if needed, give it `role` in `project`, and return its API token."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}; choose one of {', '.join(Membership.Role.values)}."})
    user, created = User.objects.get_or_create(username=username)
    if password:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    if role == Membership.Role.ADMIN:
        user.is_staff = True  # project admins work in the Django admin
    user.save()
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    user.groups.add(ensure_role_groups()[role])
    token, _ = Token.objects.get_or_create(user=user)
    record_audit(actor=actor, event_type=AuditEvent.Type.MEMBER_ADDED, project=project, target=f"user:{user.pk}",
                 extra={"username": user.username, "role": role})
    return membership, token


# --- import ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    prompts_created: int
    completions_created: int
    tasks_created: int
    rows_skipped: int

    def as_dict(self) -> dict:
        return {
            "prompts_created": self.prompts_created,
            "completions_created": self.completions_created,
            "tasks_created": self.tasks_created,
            "rows_skipped": self.rows_skipped,
        }


def _insert_many(model, columns: list[str], values: list[tuple], batch: int = 5000) -> None:
    """INSERT rows with executemany, bypassing per-object ORM compilation (100k rows in seconds).

    JSON values go through the field's get_db_prep_save, so they are adapted per backend; callers
    pass datetimes already adapted (`connection.ops.adapt_datetimefield_value`).
    """
    if not values:
        return
    fields = [model._meta.get_field(c) for c in columns]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(fields))})"
    needs_prep = [f.get_internal_type() == "JSONField" for f in fields]
    with connection.cursor() as cursor:
        for start in range(0, len(values), batch):
            chunk = [
                tuple(f.get_db_prep_save(v, connection) if prep else v for f, prep, v in zip(fields, needs_prep, row))
                for row in values[start : start + batch]
            ]
            cursor.executemany(sql, chunk)


def import_prompts(
    *, project: Project, rows: Iterable[importing.PromptRow], progress=None, actor=None, source: str = ""
) -> ImportResult:
    """Write validated rows in one transaction: all or nothing, bulk inserts, no duplicates.

    A row whose external id or prompt content already exists in the project is skipped, so importing
    the same file twice changes nothing. Rows with 2–4 completions become comparison tasks at once;
    rows without completions wait for the policy to sample them.
    """
    rows = list(rows)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        existing = Prompt.objects.filter(project=project)
        existing_ids = set(existing.exclude(external_id="").values_list("external_id", flat=True))
        existing_hashes = set(existing.values_list("content_hash", flat=True))
        fresh: list[importing.PromptRow] = []
        for row in rows:
            if (row.external_id and row.external_id in existing_ids) or row.content_hash in existing_hashes:
                continue
            fresh.append(row)
            existing_hashes.add(row.content_hash)
            if row.external_id:
                existing_ids.add(row.external_id)

        _insert_many(
            Prompt, ["project", "external_id", "text", "messages", "content_hash", "metadata", "created_at"],
            [(project.pk, r.external_id, r.text, r.messages, r.content_hash, r.metadata, now) for r in fresh],
        )
        if progress:
            progress(len(fresh))
        fresh_hashes = {r.content_hash for r in fresh}
        prompt_id_by_hash = {
            h: pk for pk, h in Prompt.objects.filter(project=project).values_list("id", "content_hash") if h in fresh_hashes
        }

        completion_values = [
            (prompt_id_by_hash[r.content_hash], c.text, c.model, {}, c.content_hash, now)
            for r in fresh for c in r.completions
        ]
        _insert_many(Completion, ["prompt", "text", "model_name", "generation", "content_hash", "created_at"], completion_values)
        new_prompt_ids = set(prompt_id_by_hash.values())
        with_tasks = [r for r in fresh if len(r.completions) >= 2]
        completion_id = {}
        if with_tasks:
            completion_id = {
                (prompt_id, h): pk
                for pk, prompt_id, h in Completion.objects.filter(prompt__project=project).values_list("id", "prompt_id", "content_hash")
                if prompt_id in new_prompt_ids
            }
        _insert_many(
            ComparisonTask,
            ["project", "prompt", "status", "judgements_needed", "judgements_done", "slots_taken", "priority",
             "is_gold", "created_at"],
            [(project.pk, prompt_id_by_hash[r.content_hash], ComparisonTask.Status.OPEN, project.overlap, 0, 0, 0,
              False, now) for r in with_tasks],
        )
        task_id_by_prompt = {}
        if with_tasks:
            task_id_by_prompt = {
                prompt_id: pk
                for pk, prompt_id in ComparisonTask.objects.filter(project=project).values_list("id", "prompt_id")
                if prompt_id in new_prompt_ids
            }
        through = ComparisonTask.completions.through
        links = []
        for r in with_tasks:
            prompt_id = prompt_id_by_hash[r.content_hash]
            links.extend(
                (task_id_by_prompt[prompt_id], completion_id[(prompt_id, c.content_hash)]) for c in r.completions
            )
        _insert_many(through, ["comparisontask", "completion"], links)
        result = ImportResult(
            prompts_created=len(fresh), completions_created=len(completion_values), tasks_created=len(with_tasks),
            rows_skipped=len(rows) - len(fresh),
        )
        record_audit(actor=actor, event_type=AuditEvent.Type.PROMPTS_IMPORTED, project=project,
                     target=f"project:{project.pk}", extra={**result.as_dict(), "source": source})
    return result


ADJUDICATION_RANKING_INVALID = "The adjudicated ranking must name each completion of the task exactly once: {ids}."
GOLD_RANKING_INVALID = "A gold ranking must name each completion of the task exactly once."


@transaction.atomic
def mark_gold(*, task: ComparisonTask, ranking: list[list[int]], actor=None) -> ComparisonTask:
    """Give a task a known answer (completion ids, best first, ties as inner lists).

    It leaves the normal queue and is mixed into every annotator's stream at the project's gold rate.
    """
    completion_ids = sorted(task.completions.values_list("id", flat=True))
    flat = [cid for group in ranking for cid in group] if isinstance(ranking, list) else []
    if not ranking or any(not isinstance(g, list) or not g for g in ranking) or sorted(flat) != completion_ids:
        raise ValidationError({"gold_ranking": GOLD_RANKING_INVALID})
    task.is_gold = True
    task.gold_ranking = ranking
    task.status = ComparisonTask.Status.OPEN
    task.save(update_fields=["is_gold", "gold_ranking", "status"])
    record_audit(actor=actor, event_type=AuditEvent.Type.GOLD_MARKED, project=task.project, target=f"task:{task.pk}")
    return task


@transaction.atomic
def create_task(*, project: Project, prompt: Prompt, completions: Sequence[Completion], priority: int = 0,
                is_gold: bool = False) -> ComparisonTask:
    if not 2 <= len(completions) <= 4:
        raise ValidationError({"completions": "A comparison task shows 2 to 4 completions."})
    task = ComparisonTask.objects.create(
        project=project, prompt=prompt, judgements_needed=project.overlap, priority=priority, is_gold=is_gold
    )
    task.completions.set(completions)
    return task


# --- the queue ---------------------------------------------------------------------------------


def release_expired_leases(*, project: Project, now: datetime | None = None, limit: int = 500) -> int:
    """Return tasks whose lease ran out to the pool. Uses the partial index on live leases only."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = Assignment.objects.filter(project=project, state=Assignment.State.LEASED, leased_until__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            expired = lock_rows(expired, skip_locked=True)
        rows = list(expired.values_list("id", "task_id")[:limit])
        if not rows:
            return 0
        Assignment.objects.filter(id__in=[assignment_id for assignment_id, _ in rows]).delete()
        for task_id, n in Counter(task_id for _, task_id in rows).items():
            ComparisonTask.objects.filter(pk=task_id).update(slots_taken=F("slots_taken") - n)
    return len(rows)


@retry_transient
def next_task(*, project: Project, annotator, now: datetime | None = None) -> Assignment | None:
    """Lease the next task this annotator has not seen; the same one again if they already hold a lease.

    Picking walks the partial index of open tasks in (priority, id) order and claims a slot with a
    conditional UPDATE, so it never scans finished tasks and never over-assigns a task.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # One pick at a time per annotator (two tabs must not end up holding two leases).
        list(lock_rows(User.objects.filter(pk=annotator.pk)).values_list("pk", flat=True))
        held = (
            Assignment.objects.select_related("task__prompt")
            .filter(annotator=annotator, project=project, state=Assignment.State.LEASED, leased_until__gt=now)
            .first()
        )
        if held is not None:
            return held
        release_expired_leases(project=project, now=now)

        seen_by_me = Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator)
        if project.gold_rate > 0 and random.random() < project.gold_rate:
            # Gold tasks are served to every annotator once, mixed in at the project's rate and
            # indistinguishable from the others; they have no overlap limit.
            gold = (
                ComparisonTask.objects.filter(project=project, is_gold=True, status=ComparisonTask.Status.OPEN)
                .filter(~Exists(seen_by_me)).order_by("id").first()
            )
            if gold is not None:
                ComparisonTask.objects.filter(pk=gold.pk).update(slots_taken=F("slots_taken") + 1)
                return _lease(gold, annotator=annotator, project=project, now=now)
        candidates = (
            ComparisonTask.objects.filter(
                project=project, status=ComparisonTask.Status.OPEN, is_gold=False,
                slots_taken__lt=F("judgements_needed"),
            )
            .filter(~Exists(seen_by_me))
            .order_by("priority", "id")
        )
        for _ in range(CANDIDATES_PER_PICK):
            if connection.features.has_select_for_update_skip_locked:
                # PostgreSQL: take the first open task no other picker holds (one row, so nobody waits on
                # rows we do not need); when every candidate is held, wait for the first one rather than
                # saying "nothing left" because of a lock.
                task = lock_rows(candidates, skip_locked=True, of=("self",)).first()
                if task is None and candidates.exists():
                    task = lock_rows(candidates, of=("self",)).first()
            else:
                task = candidates.first()  # SQLite: this transaction already holds the write lock
            if task is None:
                return None
            claimed = ComparisonTask.objects.filter(
                pk=task.pk, status=ComparisonTask.Status.OPEN, slots_taken__lt=F("judgements_needed")
            ).update(slots_taken=F("slots_taken") + 1)
            if claimed:
                return _lease(task, annotator=annotator, project=project, now=now)
    return None


def _lease(task: ComparisonTask, *, annotator, project: Project, now: datetime) -> Assignment:
    label_order = list(task.completions.values_list("id", flat=True))
    random.shuffle(label_order)  # a fresh anonymous order for every annotator
    return Assignment.objects.create(
        task=task, annotator=annotator, project=project, label_order=label_order,
        leased_at=now, leased_until=now + timedelta(seconds=project.lease_seconds),
    )


def ranking_to_completion_ids(ranking, label_map: dict[str, int]) -> list[list[int]]:
    """Translate a ranking in anonymous labels into completion ids, checking it names each exactly once."""
    if not isinstance(ranking, list) or not ranking:
        raise ValidationError({"ranking": RANKING_NOT_A_LIST})
    labels_shown = ", ".join(sorted(label_map))
    seen: set[str] = set()
    groups: list[list[int]] = []
    for group in ranking:
        if isinstance(group, str):
            group = [group]  # a flat ["a", "b"] is shorthand for [["a"], ["b"]]
        if not isinstance(group, list) or not group:
            raise ValidationError({"ranking": RANKING_BAD_GROUP.format(group=group)})
        ids = []
        for label in group:
            if not isinstance(label, str) or label.lower() not in label_map:
                raise ValidationError({"ranking": RANKING_UNKNOWN_LABEL.format(label=label, labels=labels_shown)})
            label = label.lower()
            if label in seen:
                raise ValidationError({"ranking": RANKING_DUPLICATE_LABEL.format(label=label)})
            seen.add(label)
            ids.append(label_map[label])
        groups.append(ids)
    missing = sorted(set(label_map) - seen)
    if missing:
        raise ValidationError({"ranking": RANKING_MISSING_LABEL.format(labels=", ".join(missing))})
    return groups


def _clean_flags(flags) -> list[str]:
    flags = list(flags or [])
    allowed = Judgement.Flag.values
    for flag in flags:
        if flag not in allowed:
            raise ValidationError({"flags": FLAG_UNKNOWN.format(flag=flag, allowed=", ".join(allowed))})
    return sorted(set(flags))


@retry_transient
def submit_judgement(
    *, task: ComparisonTask, annotator, ranking, flags: Sequence[str] = (), confidence: int | None = None,
    comment: str = "", idempotency_key: str = "", now: datetime | None = None,
) -> tuple[Judgement, bool]:
    """Store the leaseholder's ranking once. Returns (judgement, created).

    A retry with the same Idempotency-Key returns the first judgement and stores nothing.
    """
    now = now or timezone.now()
    idempotency_key = (idempotency_key or "").strip()
    if confidence is not None and (isinstance(confidence, bool) or confidence not in range(1, 6)):
        raise ValidationError({"confidence": CONFIDENCE_RANGE})
    comment = comment or ""
    if len(comment) > COMMENT_LIMIT:
        raise ValidationError({"comment": COMMENT_TOO_LONG.format(limit=COMMENT_LIMIT)})
    if "\x00" in comment:
        raise ValidationError({"comment": NUL_NOT_ALLOWED})
    flags = _clean_flags(flags)

    with transaction.atomic():
        assignment = lock_rows(Assignment.objects.filter(task=task, annotator=annotator)).first()
        if idempotency_key:
            # Checked after taking the lock: a concurrent retry waits for the first and then sees it.
            prior = Judgement.objects.filter(annotator=annotator, idempotency_key=idempotency_key).first()
            if prior is not None:
                if prior.task_id != task.pk:
                    raise Conflict(IDEMPOTENCY_KEY_REUSED)
                return prior, False
        if assignment is None or assignment.state == Assignment.State.SKIPPED:
            raise ApplicationError(NOT_LEASEHOLDER, status_code=403)
        if assignment.state == Assignment.State.SUBMITTED:
            raise Conflict(ALREADY_JUDGED)
        if assignment.leased_until <= now:
            raise Conflict(LEASE_EXPIRED)

        ranking_ids = ranking_to_completion_ids(ranking, assignment.label_map())
        judgement = Judgement.objects.create(
            task=task, annotator=annotator, assignment=assignment, ranking=ranking_ids,
            ranking_labels=[[label.lower() for label in ([g] if isinstance(g, str) else g)] for g in ranking],
            flags=flags, confidence=confidence, comment=comment, idempotency_key=idempotency_key,
            seconds_spent=max(0.0, (now - assignment.leased_at).total_seconds()),
        )
        assignment.state = Assignment.State.SUBMITTED
        assignment.finished_at = now
        assignment.save(update_fields=["state", "finished_at"])
        if task.is_gold:
            _update_trust_from_gold(project=task.project, annotator=annotator)
            return judgement, True  # gold tasks stay open for every annotator; they never complete
        ComparisonTask.objects.filter(pk=task.pk).update(judgements_done=F("judgements_done") + 1)
        _ask_again_if_judges_disagree(task)
        ComparisonTask.objects.filter(
            pk=task.pk, status=ComparisonTask.Status.OPEN, judgements_done__gte=F("judgements_needed")
        ).update(status=ComparisonTask.Status.COMPLETE)
    return judgement, True


def _ask_again_if_judges_disagree(task: ComparisonTask) -> None:
    """Adaptive overlap: a task that reached its need with disagreeing judges wants one more, up to max_overlap."""
    project = task.project
    if not project.max_overlap or project.max_overlap <= project.overlap:
        return
    task.refresh_from_db(fields=["judgements_done", "judgements_needed"])
    if task.judgements_done < task.judgements_needed or task.judgements_needed >= project.max_overlap:
        return
    rankings = list(Judgement.objects.filter(task=task).values_list("ranking", flat=True))
    if quality.needs_more_judgements(rankings, min_judgements=project.overlap, max_judgements=project.max_overlap,
                                     agreement_threshold=project.agreement_threshold):
        ComparisonTask.objects.filter(pk=task.pk).update(judgements_needed=F("judgements_needed") + 1)


def _update_trust_from_gold(*, project: Project, annotator) -> None:
    """Refresh the annotator's trust from their gold answers (agreement joins in `recompute_trust`)."""
    correct = total = 0
    for ranking, gold in Judgement.objects.filter(task__project=project, task__is_gold=True, annotator=annotator) \
            .values_list("ranking", "task__gold_ranking"):
        truth = {(a, b): o for a, b, o in quality.pairs_from_ranking(gold or [])}
        for a, b, outcome in quality.pairs_from_ranking(ranking):
            if truth.get((a, b), 0) != 0:
                correct += outcome == truth[(a, b)]
                total += 1
    Membership.objects.filter(project=project, user=annotator).update(
        trust=quality.trust_score(gold_correct=correct, gold_total=total, agree=0, agree_total=0)
    )


def recompute_trust(*, project: Project) -> dict[str, float]:
    """Trust of every member from gold accuracy and leave-one-out agreement with the consensus."""
    from feedback import dashboard

    data = dashboard.trust_evidence(project=project)
    scores = {}
    with transaction.atomic():
        for membership in Membership.objects.filter(project=project).select_related("user"):
            evidence = data.get(membership.user.username, {})
            scores[membership.user.username] = quality.trust_score(
                gold_correct=evidence.get("gold_correct", 0), gold_total=evidence.get("gold_total", 0),
                agree=evidence.get("agree", 0), agree_total=evidence.get("agree_total", 0),
            )
            Membership.objects.filter(pk=membership.pk).update(trust=scores[membership.user.username])
    return scores


@retry_transient
def skip_task(*, task: ComparisonTask, annotator, now: datetime | None = None) -> Assignment:
    """Give a leased task back: it returns to the pool for others and is never served to this annotator again."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = lock_rows(Assignment.objects.filter(task=task, annotator=annotator)).first()
        if assignment is None or assignment.state != Assignment.State.LEASED or assignment.leased_until <= now:
            raise ApplicationError(NOT_LEASEHOLDER, status_code=403)
        assignment.state = Assignment.State.SKIPPED
        assignment.finished_at = now
        assignment.save(update_fields=["state", "finished_at"])
        ComparisonTask.objects.filter(pk=task.pk).update(slots_taken=F("slots_taken") - 1)
    return assignment



@transaction.atomic
def adjudicate(*, task: ComparisonTask, reviewer, ranking: list[list[int]], note: str = ""):
    """Record a reviewer's decision beside the judgements (never over them); it decides the task's pairs in exports."""
    from feedback.models import Adjudication

    completion_ids = sorted(task.completions.values_list("id", flat=True))
    flat = sorted(cid for group in ranking for cid in group)
    if flat != completion_ids:
        raise ValidationError({"ranking": ADJUDICATION_RANKING_INVALID.format(ids=", ".join(map(str, completion_ids)))})
    adjudication, _ = Adjudication.objects.update_or_create(
        task=task, defaults={"reviewer": reviewer, "ranking": ranking, "note": note[:2000]}
    )
    record_audit(actor=reviewer, event_type=AuditEvent.Type.TASK_ADJUDICATED, project=task.project,
                 target=f"task:{task.pk}", extra={"ranking": ranking})
    return adjudication
