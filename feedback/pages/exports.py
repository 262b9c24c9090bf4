"""The exports page: choose a format and filters, create a snapshot with its files, list past snapshots
(state, sha256, counts per split, filters) and download their files.

For project admins, as the export API (`ProjectExportApi`): non-members get 404, other members 403.
The files are written in the request, as the API streams its export in the request: a pending
snapshot turns complete or failed before the page answers (`services.export_preferences`).
"""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from feedback import exports as export_rows
from feedback import services
from feedback.exports import DEFAULT_TRUST_THRESHOLD, ExportFilters
from feedback.models import Completion, PreferenceSnapshot
from feedback.pages.common import nav, project_for_admin
from feedback.pages.fields import AsciiFloatField, AsciiIntegerField
from feedback.services import snapshots as snapshot_rows

SNAPSHOTS_SHOWN = 50
MODELS_OFFERED = 200
FORMAT_LABELS = {"jsonl": "JSONL (one TRL row per line)", "parquet": "Parquet",
                 "hf": "Hugging Face (JSONL files + a saved DatasetDict on the server)"}
CONTENT_TYPES = {".jsonl": "application/jsonl; charset=utf-8", ".parquet": "application/vnd.apache.parquet",
                 ".md": "text/markdown; charset=utf-8"}
DOWNLOADABLE = ("train.jsonl", "test.jsonl", "train.parquet", "test.parquet", "README.md")
STREAMED_ROWS = "rows.jsonl"  # the rows the snapshot stored when it was made: the bytes its sha256 covers
FILE_UNKNOWN = "file: choose one of {names}."


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[(f, FORMAT_LABELS.get(f, f)) for f in export_rows.FORMATS], initial="jsonl",
                               help_text="Every format also writes a README.md dataset card with the counts.")
    min_agreement = AsciiFloatField(min_value=0.0, max_value=1.0, initial=0.0, label="Minimum agreement",
                                     help_text="Leave out pairs whose judges agree less than this (0–1).")
    include_flagged = forms.BooleanField(required=False, initial=True, label="Include flagged tasks",
                                         help_text="Untick to leave out every task a judge flagged unsafe or all bad.")
    only_trusted = forms.BooleanField(required=False, label="Only trusted annotators",
                                      help_text="Use only judgements of annotators whose trust reaches the threshold.")
    trust_threshold = AsciiFloatField(min_value=0.0, max_value=1.0, initial=DEFAULT_TRUST_THRESHOLD,
                                       help_text="Trust (0–1) an annotator needs when “only trusted” is ticked.")
    since_snapshot = forms.ModelChoiceField(queryset=PreferenceSnapshot.objects.none(), required=False,
                                            help_text="Only judgements newer than this complete snapshot.")
    models = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="Only pairs whose two completions come from these models (none ticked: all).")
    test_fraction = AsciiFloatField(min_value=0.0, max_value=0.99, initial=0.1,
                                     help_text="Share of prompts held out as the test split (0 to below 1); split by prompt.")
    split_seed = AsciiIntegerField(min_value=0, max_value=2**31 - 1, initial=0,
                                    help_text="Another seed gives another train/test split of the prompts.")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["since_snapshot"].queryset = project.snapshots.filter(state=PreferenceSnapshot.State.COMPLETE)
        self.fields["since_snapshot"].label_from_instance = lambda s: f"#{s.pk} · {s.created_at:%Y-%m-%d %H:%M} · {s.sha256[:12]}"
        names = (Completion.objects.filter(prompt__project=project).exclude(model_name="")
                 .order_by("model_name").values_list("model_name", flat=True).distinct()[:MODELS_OFFERED])
        self.fields["models"].choices = [(n, n) for n in names]

    def export_filters(self) -> ExportFilters:
        data = self.cleaned_data
        return ExportFilters(
            min_agreement=data["min_agreement"], drop_flagged=not data["include_flagged"],
            only_trusted=data["only_trusted"], trust_threshold=data["trust_threshold"],
            since_snapshot=data["since_snapshot"].pk if data["since_snapshot"] else None,
            models=tuple(data["models"]), test_fraction=data["test_fraction"], split_seed=data["split_seed"],
        )


def snapshot_files(snapshot: PreferenceSnapshot) -> list[str]:
    """What a snapshot offers for download: its files when they were written whole, and its stored rows (every
    complete snapshot: `sha256sum` of that file is its sha256)."""
    if not snapshot.is_complete:
        return []
    if not snapshot.path:
        return [STREAMED_ROWS]
    folder = Path(snapshot.path)
    return [name for name in DOWNLOADABLE if (folder / name).is_file()] + [STREAMED_ROWS]


def _page(request, project, form, status=200):
    snapshots = list(project.snapshots.select_related("created_by").order_by("-created_at", "-pk")[:SNAPSHOTS_SHOWN])
    rows = [{"snapshot": s, "files": snapshot_files(s)} for s in snapshots]
    return render(request, "feedback/exports.html", {
        "project": project, "form": form, "rows": rows, "shown": SNAPSHOTS_SHOWN,
        "total": project.snapshots.count(), **nav(request, project),
    }, status=status)


@login_required
def exports(request, slug):
    project = project_for_admin(request, slug)
    if request.method != "POST":
        return _page(request, project, ExportForm(project=project))
    form = ExportForm(request.POST, project=project)
    if form.is_valid():
        try:
            snapshot, _ = services.export_preferences(project=project, fmt=form.cleaned_data["format"],
                                                      filters=form.export_filters(), actor=request.user)
        except ValidationError as exc:
            _add_errors(form, exc)
        except OSError as exc:  # the snapshot is marked failed and shows so in the table
            messages.error(request, f"Writing the files failed: {exc}")
            return redirect("feedback:exports", slug=project.slug)
        else:
            pairs = snapshot.counts.get("pairs", 0)
            messages.success(request, f"Snapshot {snapshot.pk} created: {pairs} pairs, sha256 {snapshot.sha256[:12]}.")
            return redirect("feedback:exports", slug=project.slug)
    return _page(request, project, form, status=400)


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


@login_required
def snapshot_download(request, slug, snapshot_id):
    """One file of a complete snapshot (`?file=train.jsonl`), or the rows of a snapshot without files."""
    project = project_for_admin(request, slug)
    snapshot = get_object_or_404(PreferenceSnapshot, pk=snapshot_id, project=project)
    offered = snapshot_files(snapshot)
    if not offered:
        raise Http404("This snapshot has no files to download (pending or failed).")
    name = request.GET.get("file", offered[0])
    if name not in offered:
        return HttpResponseBadRequest(FILE_UNKNOWN.format(names=", ".join(offered)), content_type="text/plain")
    filename = f"{project.slug}-snapshot-{snapshot.pk}-{name}"
    if name == STREAMED_ROWS:
        snapshot = snapshot_rows.ensure_rows_stored(snapshot)  # before its sha256 goes into the header
        response = StreamingHttpResponse(snapshot_rows.stored_lines(snapshot), content_type=CONTENT_TYPES[".jsonl"])
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    else:
        path = Path(snapshot.path) / name
        response = FileResponse(path.open("rb"), as_attachment=True, filename=filename,
                                content_type=CONTENT_TYPES[path.suffix])
    response["X-Snapshot-Id"] = str(snapshot.pk)
    response["X-Snapshot-Sha256"] = snapshot.sha256
    return response
