"""Reads of the data browser: a project's tasks page by page (keyset on id, filtered), one task with its
judgements and consensus, and an annotator's own judgement history.

Pages never use OFFSET or count the table: each is an indexed range scan on the task id (`id > after` or
`id < before`, LIMIT page + 1); status and gold have their own (project, field, id) indexes. Filters that no
index answers (flags, model, prompt text) read the id range `ID_WINDOW` ids at a time and stop after
`SCAN_BUDGET_IDS` ids, so a rare value costs a bounded time per page, not a scan of the whole table.
Agreement is not stored (it changes with every judgement and with trust): it is computed for candidate
tasks only, `AGREEMENT_BATCH` at a time, at most `AGREEMENT_SCAN_LIMIT` per page. A page whose budget ran
out says so and links on from where it stopped. Every page covers a contiguous id range, so walking the
pages visits every matching task exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Substr
from django.http import Http404

from core.permissions import REVIEWER, has_project_role
from feedback import quality
from feedback.models import (
    LABELS, Adjudication, Assignment, ComparisonTask, Completion, Judgement, Membership, Project,
)

PAGE_SIZE = 50
SEARCH_MAX_CHARS = 200
MODEL_MAX_CHARS = 200
EXCERPT_CHARS = 160
AGREEMENT_BATCH = 100
AGREEMENT_SCAN_LIMIT = 200
ID_WINDOW = 5_000
SCAN_BUDGET_IDS = 5_000
MAX_ID_DIGITS = 18

STATUS_CHOICES = tuple(ComparisonTask.Status.values)
GOLD_CHOICES = ("yes", "no")
AGREEMENT_CHOICES = ("low", "high")
FLAG_CHOICES = ("any", *Judgement.Flag.values)

BAD_CHOICE = "{param}: must be one of {allowed}."
BAD_ID = "{param}: must be an id (ASCII digits only, at most 18)."
BOTH_CURSORS = "after, before: give one of them, not both."
TOO_LONG = "{param}: at most {limit} characters."
NUL_IN_TEXT = "{param}: must not contain NUL characters."


@dataclass(frozen=True)
class TaskFilters:
    status: str = ""
    gold: str = ""  # "yes" | "no" | ""
    agreement: str = ""  # "low" (below the project's agreement_threshold) | "high" | ""
    flag: str = ""  # "any" | "all_bad" | "unsafe" | "": a judgement of the task carries it
    model: str = ""  # a completion of the task comes from this model (exact name)
    q: str = ""  # the prompt text contains this (case-insensitive)

    def as_params(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _choice(params, name: str, allowed: tuple) -> str:
    value = params.get(name, "")
    if value and value not in allowed:
        raise ValidationError({name: BAD_CHOICE.format(param=name, allowed=", ".join(allowed))})
    return value


def _text(params, name: str, limit: int) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        raise ValidationError({name: TOO_LONG.format(param=name, limit=limit)})
    if "\x00" in value:
        raise ValidationError({name: NUL_IN_TEXT.format(param=name)})
    return value


def parse_task_filters(params) -> TaskFilters:
    """The filters of a query string; a bad value raises ValidationError naming the parameter."""
    return TaskFilters(
        status=_choice(params, "status", STATUS_CHOICES), gold=_choice(params, "gold", GOLD_CHOICES),
        agreement=_choice(params, "agreement", AGREEMENT_CHOICES), flag=_choice(params, "flag", FLAG_CHOICES),
        model=_text(params, "model", MODEL_MAX_CHARS), q=_text(params, "q", SEARCH_MAX_CHARS),
    )


def parse_cursor(params) -> tuple[int | None, int | None]:
    """(after, before) of a query string: ASCII digits only, one of the two at most."""
    values = []
    for name in ("after", "before"):
        raw = params.get(name, "")
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_ID_DIGITS):
            raise ValidationError({name: BAD_ID.format(param=name)})
        values.append(int(raw) if raw else None)
    if values[0] is not None and values[1] is not None:
        raise ValidationError({"after": BOTH_CURSORS})
    return values[0], values[1]


# --- the list ----------------------------------------------------------------------------------------------------

FLAG_VALUES = {  # flags are stored sorted and de-duplicated (services.queue), so exact JSON values match
    "all_bad": [["all_bad"], ["all_bad", "unsafe"]],
    "unsafe": [["unsafe"], ["all_bad", "unsafe"]],
    "any": [["all_bad"], ["unsafe"], ["all_bad", "unsafe"]],
}


def filtered_tasks(*, project: Project, filters: TaskFilters) -> QuerySet[ComparisonTask]:
    """The project's tasks matching every filter but agreement (that one is computed, see `task_page`)."""
    qs = ComparisonTask.objects.filter(project=project)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.gold:
        # `is_gold__in=[…]`, not `is_gold=…`: SQLite gets `is_gold IN (1)`, which can use the (project, is_gold,
        # id) index; a bare boolean column in WHERE (what `is_gold=True` becomes) cannot.
        qs = qs.filter(is_gold__in=[filters.gold == "yes"])
    if filters.agreement:
        qs = qs.filter(is_gold=False, judgements_done__gte=2)  # agreement needs two judges of a non-gold task
    if filters.flag:
        flagged = Q()
        for value in FLAG_VALUES[filters.flag]:
            flagged |= Q(flags=value)
        qs = qs.filter(Exists(Judgement.objects.filter(flagged, task=OuterRef("pk"))))
    if filters.model:
        through = ComparisonTask.completions.through.objects.filter(
            comparisontask_id=OuterRef("pk"), completion__model_name=filters.model)
        qs = qs.filter(Exists(through))
    if filters.q:
        qs = qs.filter(prompt__text__icontains=filters.q)
    return qs


@dataclass
class TaskPage:
    rows: list[dict]
    next_after: int | None = None  # link on to later tasks
    prev_before: int | None = None  # link back to earlier tasks
    scanned_to: int | None = None  # set when the page's scan budget ran out before the page was full
    filters: TaskFilters = field(default_factory=TaskFilters)


def _is_windowed(filters: TaskFilters) -> bool:
    """Filters no index answers (flags, model, text, agreement) read the id range a window at a time, within a
    budget; status and gold have indexes (project, status, id) and (project, is_gold, id) and need none."""
    return bool(filters.flag or filters.model or filters.q or filters.agreement)


def task_page(*, project: Project, filters: TaskFilters, after: int | None = None, before: int | None = None,
              page_size: int = PAGE_SIZE) -> TaskPage:
    """One page of tasks in id order: the first, the one after `after`, or the one before `before`."""
    qs = filtered_tasks(project=project, filters=filters)
    keep = None
    if filters.agreement:
        threshold = project.agreement_threshold

        def keep(ids: list[int]) -> list[int]:
            scores = agreement_of(task_ids=ids, project=project)
            want_low = filters.agreement == "low"
            return [i for i in ids if scores.get(i) is not None and (scores[i] < threshold) == want_low]

    span = None
    if _is_windowed(filters):
        ids_ = ComparisonTask.objects.filter(project=project).values_list("id", flat=True)
        first, last = ids_.order_by("id").first(), ids_.order_by("-id").first()
        span = (first, last) if first is not None else None
        if span is None:
            return TaskPage(rows=[], filters=filters)
    scan = _Scan(qs, page_size=page_size, keep=keep, span=span, descending=before is not None)
    ids, continuation, budget_out = scan.run(before if before is not None else after)
    page = TaskPage(rows=task_rows(project=project, task_ids=ids), filters=filters)
    page.scanned_to = continuation if budget_out else None
    if before is None:
        page.prev_before = after + 1 if after is not None else None
        page.next_after = continuation
    else:
        page.next_after = before - 1
        page.prev_before = continuation
    return page


@dataclass
class _Scan:
    """Keyset scan of one page. Each step reads at most one id window (when `span` is set) and at most
    one batch; `keep` filters a batch in Python. Stops when the page is full (one more than a page
    found), the ids run out, or a budget (ids spanned, rows kept-filtered) is spent."""

    qs: QuerySet
    page_size: int
    keep: Callable | None
    span: tuple[int, int] | None  # (first, last) task id of the project; None: no id windows
    descending: bool

    def _step(self, cursor: int | None) -> tuple[list[int], int | None, bool]:
        """(ids read, cursor after the step, whether the ids beyond it are exhausted)."""
        qs, edge = self.qs, None
        if cursor is not None:
            qs = qs.filter(id__lt=cursor) if self.descending else qs.filter(id__gt=cursor)
        if self.span is not None:
            first, last = self.span
            if cursor is None:
                start = first - 1
            else:
                start = min(cursor, last + 1) if self.descending else max(cursor, first - 1)
            edge = start - ID_WINDOW if self.descending else start + ID_WINDOW
            qs = qs.filter(id__gte=edge) if self.descending else qs.filter(id__lte=edge)
        size = self.page_size + 1 if self.keep is None else AGREEMENT_BATCH
        batch = list(qs.order_by("-id" if self.descending else "id").values_list("id", flat=True)[:size])
        if len(batch) == size:
            return batch, batch[-1], False
        if edge is None:
            return batch, None, True
        return batch, edge, (edge <= self.span[0] if self.descending else edge >= self.span[1])

    def run(self, cursor: int | None) -> tuple[list[int], int | None, bool]:
        found: list[int] = []
        rows_read = 0
        origin = cursor if cursor is not None else (self.span[0] - 1 if self.span else 0)
        while True:
            batch, new_cursor, exhausted = self._step(cursor)
            rows_read += len(batch)
            for task_id in (batch if self.keep is None else self.keep(batch)):
                found.append(task_id)
                if len(found) > self.page_size:  # one more than a page: the next page starts after this one
                    page = found[:self.page_size]
                    return sorted(page), page[-1], False
            if exhausted:
                return sorted(found), None, False
            cursor = new_cursor
            if self.keep is None and self.span is None:
                return sorted(found), cursor, False  # unreachable: an unfiltered full batch fills the page
            if rows_read >= AGREEMENT_SCAN_LIMIT or (self.span and abs(cursor - origin) >= SCAN_BUDGET_IDS):
                return sorted(found), cursor, True


def agreement_of(*, task_ids: list[int], project: Project, rows: list | None = None) -> dict[int, float | None]:
    """Mean trust-weighted pair agreement of each task's judges (None: fewer than two judgements), as the
    review page computes it. `rows`: the tasks' judgements as (task id, annotator id, ranking), if read already."""
    votes: dict[int, list] = {task_id: [] for task_id in task_ids}
    if rows is None:
        rows = list(Judgement.objects.filter(task_id__in=task_ids).values_list("task_id", "annotator_id", "ranking"))
    trust = dict(Membership.objects.filter(project=project, user_id__in={a for _, a, _ in rows})
                 .values_list("user_id", "trust"))
    for task_id, annotator_id, ranking in rows:
        votes[task_id].append((ranking, trust.get(annotator_id, 1.0)))
    scores: dict[int, float | None] = {}
    for task_id, task_votes in votes.items():
        pairs = quality.consensus_pairs(task_votes) if len(task_votes) > 1 else []
        scores[task_id] = sum(p.agreement for p in pairs) / len(pairs) if pairs else None
    return scores


def task_rows(*, project: Project, task_ids: list[int]) -> list[dict]:
    """What the list shows of each task, in a handful of queries for the whole page."""
    if not task_ids:
        return []
    tasks = (ComparisonTask.objects.filter(pk__in=task_ids).order_by("id")
             .annotate(excerpt=Substr("prompt__text", 1, EXCERPT_CHARS))
             .values("id", "status", "is_gold", "judgements_done", "judgements_needed", "excerpt", "created_at"))
    models: dict[int, set] = {}
    through = ComparisonTask.completions.through.objects.filter(comparisontask_id__in=task_ids)
    for task_id, model in through.values_list("comparisontask_id", "completion__model_name"):
        models.setdefault(task_id, set()).add(model or "?")
    judgements = list(Judgement.objects.filter(task_id__in=task_ids)
                      .values_list("task_id", "annotator_id", "ranking", "flags"))
    flags: dict[int, set] = {}
    for task_id, _, _, task_flags in judgements:
        flags.setdefault(task_id, set()).update(task_flags or ())
    adjudicated = set(Adjudication.objects.filter(task_id__in=task_ids).values_list("task_id", flat=True))
    agreement = agreement_of(task_ids=task_ids, project=project, rows=[j[:3] for j in judgements])
    return [{**t, "models": sorted(models.get(t["id"], ())), "flags": sorted(flags.get(t["id"], ())),
             "adjudicated": t["id"] in adjudicated, "agreement": agreement.get(t["id"])} for t in tasks]


# --- one task ----------------------------------------------------------------------------------------------------


def task_in_project(*, project: Project, task_id: int) -> ComparisonTask:
    try:
        return ComparisonTask.objects.select_related("prompt", "project").get(pk=task_id, project=project)
    except ComparisonTask.DoesNotExist:
        raise Http404("No such task.") from None


def task_for_viewer(*, project: Project, task_id: int, user) -> tuple[ComparisonTask, bool]:
    """(task, whether the user reviews it). Annotators only see tasks they held or judged: 404 for the rest."""
    task = task_in_project(project=project, task_id=task_id)
    is_reviewer = has_project_role(user=user, project=project, role=REVIEWER)
    if not is_reviewer and not Assignment.objects.filter(task=task, annotator=user).exists():
        raise Http404("No such task.")
    return task, is_reviewer


def task_review_detail(*, task: ComparisonTask) -> dict:
    """Everything a reviewer sees of a task: completions with models, every judgement, the consensus."""
    completions = list(task.completions.order_by("id").values("id", "text", "model_name"))
    judgements = list(task.judgements.select_related("annotator").order_by("id"))
    trust = dict(Membership.objects.filter(project_id=task.project_id).values_list("user_id", "trust"))
    adjudication = Adjudication.objects.filter(task=task).select_related("reviewer").first()
    for j in judgements:
        j.trust = trust.get(j.annotator_id, 1.0)
    votes = [(j.ranking, j.trust) for j in judgements]
    pairs = quality.consensus_pairs(votes, adjudicated_ranking=adjudication.ranking if adjudication else None)
    return {
        "completions": completions, "judgements": judgements, "adjudication": adjudication,
        "consensus_ranking": quality.consensus_ranking([j.ranking for j in judgements]) if judgements else [],
        "consensus_pairs": pairs,
        "agreement": sum(p.agreement for p in pairs) / len(pairs) if pairs and len(judgements) > 1 else None,
    }


def own_view(*, task: ComparisonTask, annotator) -> dict:
    """An annotator's view of a task: the completions under their own anonymous labels, their judgement."""
    assignment = Assignment.objects.filter(task=task, annotator=annotator).first()
    judgement = Judgement.objects.filter(task=task, annotator=annotator).first()
    if assignment is None:
        return {"assignment": None, "judgement": judgement, "completions": []}
    texts = dict(Completion.objects.filter(pk__in=assignment.label_order).values_list("id", "text"))
    completions = [{"label": LABELS[i], "text": texts.get(cid, "")} for i, cid in enumerate(assignment.label_order)]
    rank_of = {}
    if judgement is not None:
        rank_of = {label: rank for rank, group in enumerate(judgement.ranking_labels, 1) for label in group}
    for c in completions:
        c["rank"] = rank_of.get(c["label"])
    return {"assignment": assignment, "judgement": judgement, "completions": completions,
            "is_revisable": judgement is not None and is_revisable(task=task)}


def is_revisable(*, task: ComparisonTask) -> bool:
    """A judgement may change while its task is open and no reviewer adjudicated it."""
    return task.status == ComparisonTask.Status.OPEN and not Adjudication.objects.filter(task=task).exists()


# --- an annotator's history ---------------------------------------------------------------------------------------


def judgement_history(*, project: Project, annotator, after: int | None = None, before: int | None = None,
                      page_size: int = PAGE_SIZE) -> dict:
    """The annotator's judgements in this project, newest first, keyset-paginated on the judgement id
    (`before`: older ones, `after`: newer ones)."""
    qs = Judgement.objects.filter(annotator=annotator, task__project=project)
    if after is not None:
        rows = list(qs.filter(id__gt=after).order_by("id").select_related("task")[:page_size + 1])
        more_newer, rows = len(rows) > page_size, rows[:page_size][::-1]
        more_older = True
    else:
        if before is not None:
            qs = qs.filter(id__lt=before)
        rows = list(qs.order_by("-id").select_related("task")[:page_size + 1])
        more_older, rows = len(rows) > page_size, rows[:page_size]
        more_newer = before is not None
    adjudicated = set(Adjudication.objects.filter(task_id__in=[j.task_id for j in rows])
                      .values_list("task_id", flat=True))
    items = [{"judgement": j, "task": j.task,
              "is_revisable": j.task.status == ComparisonTask.Status.OPEN and j.task_id not in adjudicated}
             for j in rows]
    return {
        "items": items,
        "older_before": rows[-1].pk if rows and more_older else None,
        "newer_after": (rows[0].pk if rows else (before - 1 if before else None)) if more_newer else None,
    }
