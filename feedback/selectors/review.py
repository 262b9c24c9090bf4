"""The reviewers' queue of disputed tasks and one task's evidence (reads only).

A task enters the queue once it has two judgements or more; its agreement is the mean pair agreement
of its judges (trust-weighted consensus from `feedback.quality`, as on the dashboard), computed
without the adjudication, so adjudicating a task does not move it in the order. The scores are read
from the project's recent judgements (`selectors.evidence.MAX_JUDGEMENTS_ANALYSED`) and cached until the next
judgement; whether a task is adjudicated is read fresh on every request.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Max

from feedback import quality
from feedback.models import LABELS, Adjudication, ComparisonTask, Judgement, Membership, Project
from feedback.selectors.evidence import MAX_JUDGEMENTS_ANALYSED

PAGE_SIZE = 20
QUEUE_CACHE_SECONDS = 300
FLAG_CHOICES = {"any", *(value for value, _ in Judgement.Flag.choices)}
STATUS_CHOICES = ("open", "adjudicated", "all")
GOLD_CHOICES = ("exclude", "only", "include")


@dataclass(frozen=True)
class QueueEntry:
    task_id: int
    agreement: float
    judgements: int
    flags: tuple[str, ...]  # every flag any judge set, sorted
    is_gold: bool

    @property
    def key(self) -> tuple[float, int]:
        """The queue's order: least agreement first, then the oldest task."""
        return (self.agreement, self.task_id)


@dataclass(frozen=True)
class QueueFilters:
    """Which disputed tasks to list; each one narrows the queue (all of them hold at once)."""

    agreement_below: float = 1.0  # agreement < this; 1 lists every task with any disagreement
    flag: str = ""  # "" any task, "any" a task some judge flagged, or one flag value
    status: str = "open"  # open: not adjudicated yet, adjudicated, all
    gold: str = "exclude"  # exclude gold tasks, only gold tasks, include both

    def admits(self, entry: QueueEntry, adjudicated: set[int]) -> bool:
        if not entry.agreement < self.agreement_below:
            return False
        if self.flag == "any" and not entry.flags or self.flag not in ("", "any") and self.flag not in entry.flags:
            return False
        if self.status != "all" and (entry.task_id in adjudicated) != (self.status == "adjudicated"):
            return False
        return self.gold == "include" or entry.is_gold == (self.gold == "only")


def scored_tasks(*, project: Project) -> list[QueueEntry]:
    """Every task judged at least twice, in queue order (cached until the project's next judgement)."""
    latest = Judgement.objects.filter(task__project=project).aggregate(latest=Max("id"))["latest"] or 0
    return cache.get_or_set(f"feedback:review-queue:{project.pk}:{latest}", lambda: _score(project),
                            QUEUE_CACHE_SECONDS)


def _score(project: Project) -> list[QueueEntry]:
    rows = (Judgement.objects.filter(task__project=project).order_by("-id")
            .values_list("task_id", "annotator_id", "ranking", "flags")[:MAX_JUDGEMENTS_ANALYSED])
    trust = dict(Membership.objects.filter(project=project).values_list("user_id", "trust"))
    votes: dict[int, list] = defaultdict(list)
    flags: dict[int, set] = defaultdict(set)
    for task_id, annotator_id, ranking, task_flags in rows:
        votes[task_id].append((ranking, trust.get(annotator_id, 1.0)))
        flags[task_id].update(f for f in task_flags or () if isinstance(f, str))
    gold = set(ComparisonTask.objects.filter(project=project, is_gold=True).values_list("id", flat=True))
    entries = []
    for task_id, task_votes in votes.items():
        if len(task_votes) < 2:
            continue
        pairs = quality.consensus_pairs(task_votes)
        agreement = sum(p.agreement for p in pairs) / len(pairs) if pairs else 1.0
        entries.append(QueueEntry(task_id, agreement, len(task_votes), tuple(sorted(flags[task_id])), task_id in gold))
    return sorted(entries, key=lambda e: e.key)


def adjudicated_ids(*, project: Project) -> set[int]:
    return set(Adjudication.objects.filter(task__project=project).values_list("task_id", flat=True))


def review_queue(*, project: Project, filters: QueueFilters) -> list[QueueEntry]:
    """The tasks the filters admit, in queue order."""
    adjudicated = adjudicated_ids(project=project)
    return [entry for entry in scored_tasks(project=project) if filters.admits(entry, adjudicated)]


def next_in_queue(*, project: Project, filters: QueueFilters, after_task_id: int) -> int | None:
    """The task after `after_task_id` in the filtered queue (from the start when it was the last), never itself."""
    entries = scored_tasks(project=project)
    current = next((e.key for e in entries if e.task_id == after_task_id), None)
    queue = [e for e in review_queue(project=project, filters=filters) if e.task_id != after_task_id]
    if not queue:
        return None
    later = [e for e in queue if current is None or e.key > current]
    return (later or queue)[0].task_id


@dataclass
class TaskEvidence:
    """One task as a reviewer adjudicates it: completions under anonymous labels and every judgement."""

    task: ComparisonTask
    completions: list[dict]  # {"label", "id", "text"} in label order
    judgements: list[dict]  # {"annotator", "groups" (labels), "flags", "confidence", "comment", "created_at"}
    adjudication: Adjudication | None
    adjudication_groups: list[list[str]]

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.completions]

    def ids_of(self, groups: list[list[str]]) -> list[list[int]]:
        by_label = {c["label"]: c["id"] for c in self.completions}
        return [[by_label[label] for label in group] for group in groups]


def task_evidence(*, task: ComparisonTask) -> TaskEvidence:
    """Completions labelled A, B, … by id (the same for every reviewer: the labels name them in notes)."""
    completions = [{"label": LABELS[i], "id": c.pk, "text": c.text}
                   for i, c in enumerate(task.completions.order_by("id"))]
    label_of = {c["id"]: c["label"] for c in completions}

    def groups(ranking) -> list[list[str]]:
        return [[label_of.get(cid, "?") for cid in group] for group in ranking or []]

    judgements = [
        {"annotator": j.annotator.username, "groups": groups(j.ranking), "flags": j.flags, "confidence": j.confidence,
         "comment": j.comment, "created_at": j.created_at}
        for j in task.judgements.select_related("annotator").order_by("id")
    ]
    adjudication = Adjudication.objects.filter(task=task).select_related("reviewer").first()
    return TaskEvidence(task=task, completions=completions, judgements=judgements, adjudication=adjudication,
                        adjudication_groups=groups(adjudication.ranking) if adjudication else [])
