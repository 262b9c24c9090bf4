"""Reviewers' pages: the queue of disputed tasks (filters, pages, a count) and one task's adjudication.

Both are for reviewers and admins of the project: everybody else gets 404, as for a missing project.
Filters travel in the query string, so "adjudicate, then the next task" keeps them. Writes go through
`services.adjudicate` (its audit row included).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from feedback import selectors, services
from feedback.models import ComparisonTask
from feedback.pages.common import nav, project_for_reviewer
from feedback.pages.fields import AsciiFloatField, AsciiIntegerField
from feedback.selectors.review import PAGE_SIZE, QueueFilters

FILTER_DEFAULTS = {"agreement_below": "1", "flag": "", "status": "open", "gold": "exclude"}
RANK_MISSING = "Give completion {label} a rank (1 is best; equal ranks are a tie)."


class QueueFilterForm(forms.Form):
    agreement_below = AsciiFloatField(
        min_value=0.0, max_value=1.0, label="Agreement below",
        help_text="Judges' mean pair agreement under this value (0–1); 1 lists every task with any disagreement.",
    )
    flag = forms.ChoiceField(required=False, label="Flagged", choices=[
        ("", "any task"), ("any", "flagged by a judge"), ("unsafe", "flagged unsafe"), ("all_bad", "flagged all bad"),
    ])
    status = forms.ChoiceField(label="Adjudication", choices=[
        ("open", "not adjudicated yet"), ("adjudicated", "adjudicated"), ("all", "all"),
    ])
    gold = forms.ChoiceField(label="Gold tasks", choices=[
        ("exclude", "without gold tasks"), ("only", "gold tasks only"), ("include", "with gold tasks"),
    ])
    page = AsciiIntegerField(required=False, min_value=1, max_value=1_000_000, widget=forms.HiddenInput)

    @classmethod
    def from_query(cls, query) -> "QueueFilterForm":
        """Bound to the query string, with the defaults for what it leaves out (an empty query is valid)."""
        return cls({**FILTER_DEFAULTS, **{k: query.get(k) for k in query if k in cls.base_fields}})

    def filters(self) -> QueueFilters:
        data = self.cleaned_data
        return QueueFilters(agreement_below=data["agreement_below"], flag=data["flag"], status=data["status"],
                            gold=data["gold"])

    def query(self, **extra) -> str:
        """The filters as a query string (defaults left out), for links that keep them."""
        values = {k: self.data[k] for k in FILTER_DEFAULTS if str(self.data.get(k, "")) != FILTER_DEFAULTS[k]}
        values.update({k: v for k, v in extra.items() if v})
        return urlencode(values)


class AdjudicationForm(forms.Form):
    """One rank select per completion label (equal ranks are a tie), and a note."""

    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Why you decided so (optional; kept beside the decision).")

    def __init__(self, *args, labels: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = labels
        choices = [("", "–")] + [(str(r), str(r)) for r in range(1, len(labels) + 1)]
        for label in labels:
            self.fields[f"rank_{label}"] = forms.TypedChoiceField(
                choices=choices, coerce=int, label=f"Rank of {label.upper()}",
                error_messages={"required": RANK_MISSING.format(label=label.upper()),
                                "invalid_choice": RANK_MISSING.format(label=label.upper())},
            )

    def groups(self) -> list[list[str]]:
        """[["a", "b"], ["c"]] from rank_a = 1, rank_b = 1, rank_c = 2: best first, equal ranks tied."""
        by_rank: dict[int, list[str]] = {}
        for label in self.labels:
            by_rank.setdefault(self.cleaned_data[f"rank_{label}"], []).append(label)
        return [by_rank[rank] for rank in sorted(by_rank)]


def _bad_filters(request, project, form):
    return render(request, "feedback/review.html", {
        "project": project, "form": form, "entries": [], "count": 0, "page": None, **nav(request, project),
    }, status=400)


@login_required
def review(request, slug):
    """The queue: disputed tasks matching the filters, least agreement first, PAGE_SIZE a page."""
    project = project_for_reviewer(request, slug)
    form = QueueFilterForm.from_query(request.GET)
    if not form.is_valid():
        return _bad_filters(request, project, form)
    queue = selectors.review_queue(project=project, filters=form.filters())
    pages = max(1, -(-len(queue) // PAGE_SIZE))
    number = min(form.cleaned_data["page"] or 1, pages)  # a page emptied by adjudications shows the last one
    shown = queue[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    adjudicated = selectors.adjudicated_ids(project=project) if shown else set()
    tasks = {t.pk: t for t in ComparisonTask.objects.filter(pk__in=[e.task_id for e in shown]).select_related("prompt")}
    rows = [{"entry": e, "task": tasks[e.task_id], "adjudicated": e.task_id in adjudicated} for e in shown
            if e.task_id in tasks]
    page = {"number": number, "pages": pages, "first": (number - 1) * PAGE_SIZE + 1, "last": (number - 1) * PAGE_SIZE + len(shown),
            "previous": form.query(page=number - 1) if number > 1 else None,
            "next": form.query(page=number + 1) if number < pages else None}
    return render(request, "feedback/review.html", {
        "project": project, "form": form, "rows": rows, "count": len(queue), "page": page, "query": form.query(),
        **nav(request, project),
    })


def _task_page(request, project, evidence, filter_form, form, status=200):
    task = evidence.task
    queue = selectors.review_queue(project=project, filters=filter_form.filters())
    position = next((i + 1 for i, e in enumerate(queue) if e.task_id == task.pk), None)
    next_id = selectors.next_in_queue(project=project, filters=filter_form.filters(), after_task_id=task.pk)
    return render(request, "feedback/review_task.html", {
        "project": project, "task": task, "evidence": evidence, "form": form, "query": filter_form.query(),
        "rank_fields": [(c, form[f"rank_{c['label']}"]) for c in evidence.completions],
        "position": position, "count": len(queue), "next_id": next_id, **nav(request, project),
    }, status=status)


@login_required
def review_task(request, slug, task_id):
    """One task's prompt, completions (A, B, …) and judgements, and the reviewer's ranking form."""
    project = project_for_reviewer(request, slug)
    task = get_object_or_404(ComparisonTask.objects.select_related("prompt"), pk=task_id, project=project)
    filter_form = QueueFilterForm.from_query(request.GET)
    if not filter_form.is_valid():
        return _bad_filters(request, project, filter_form)
    evidence = selectors.task_evidence(task=task)
    if request.method != "POST":
        initial = {f"rank_{label}": rank for rank, group in enumerate(evidence.adjudication_groups, 1) for label in group}
        return _task_page(request, project, evidence, filter_form, AdjudicationForm(labels=evidence.labels, initial=initial))
    form = AdjudicationForm(request.POST, labels=evidence.labels)
    if form.is_valid():
        try:
            services.adjudicate(task=task, reviewer=request.user, ranking=evidence.ids_of(form.groups()),
                                note=form.cleaned_data["note"])
        except ValidationError as exc:
            form.add_error(None, " ".join(exc.messages))
    if not form.is_valid():
        return _task_page(request, project, evidence, filter_form, form, status=400)
    messages.success(request, f"Task {task.pk} adjudicated: {_spelled(form.groups())}.")
    next_id = selectors.next_in_queue(project=project, filters=filter_form.filters(), after_task_id=task.pk)
    query = filter_form.query()
    if next_id is None:
        messages.info(request, "That was the last task of this queue.")
        target = reverse("feedback:review", args=[project.slug])
    else:
        target = reverse("feedback:review-task", args=[project.slug, next_id])
    return redirect(f"{target}?{query}" if query else target)


def _spelled(groups: list[list[str]]) -> str:
    return " > ".join(" = ".join(label.upper() for label in group) for group in groups)
