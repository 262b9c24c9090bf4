"""Creating a project, editing its settings, and uploading prompts into it."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render

from core.exceptions import ApplicationError
from feedback import importing, selectors, services
from feedback.forms import SETTINGS_FIELDS, ImportForm, ProjectCreateForm, ProjectSettingsForm
from feedback.models import Project
from feedback.pages.common import nav, project_for_admin

CREATE_NEEDS_ADMIN = "Only superusers and project admins may create projects."
FILE_TOO_LARGE = "File too large: the limit is {limit} bytes."


def _add_service_errors(form, exc: ValidationError) -> None:
    """A service's ValidationError, shown beside the field it names (or above the form)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


@login_required
def project_create(request):
    if not selectors.may_create_projects(user=request.user):
        raise PermissionDenied(CREATE_NEEDS_ADMIN)
    form = ProjectCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.create_project(**form.cleaned_data, actor=request.user)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Project {project.name} created. Upload prompts to start.")
            return redirect("feedback:project-import", slug=project.slug)
    return render(request, "feedback/project_form.html", {"form": form, "creating": True, **nav(request)})


@login_required
def project_settings(request, slug):
    project = project_for_admin(request, slug)
    # The form validates a copy: the real project changes only through services.update_project.
    data = request.POST if request.method == "POST" else None
    form = ProjectSettingsForm(data, instance=Project.objects.get(pk=project.pk))
    if request.method == "POST" and form.is_valid():
        try:
            services.update_project(project=project, actor=request.user,
                                    **{name: form.cleaned_data[name] for name in SETTINGS_FIELDS})
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("feedback:project-settings", slug=project.slug)
    return render(request, "feedback/project_form.html",
                  {"form": form, "project": project, "creating": False, **nav(request, project)})


def _import(request, project, form) -> tuple[dict | None, list[str]]:
    """Run the API's import path on a valid form: (counts, []) or (None, errors by line and field)."""
    upload = form.cleaned_data["file"]
    if upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        return None, [FILE_TOO_LARGE.format(limit=settings.IMPORT_MAX_UPLOAD_BYTES)]
    try:
        rows = importing.read_rows(upload.file, form.cleaned_data["format"])
        result = services.import_prompts(project=project, rows=rows, actor=request.user,
                                         source=f"page upload {upload.name}")
    except ValidationError as exc:
        return None, exc.messages
    except ApplicationError as exc:
        return None, [exc.message]
    return result.as_dict(), []


@login_required
def project_import(request, slug):
    """Upload prompts: all or nothing, errors listed by line and field; htmx swaps in just the result."""
    project = project_for_admin(request, slug)
    form = ImportForm(*((request.POST, request.FILES) if request.method == "POST" else ()))
    result, errors = None, []
    if request.method == "POST" and form.is_valid():
        result, errors = _import(request, project, form)
    context = {"form": form, "project": project, "result": result, "errors": errors,
               "prompt_count": project.prompts.count(), **nav(request, project)}
    if request.headers.get("HX-Request"):
        return render(request, "feedback/_import_result.html", context)
    return render(request, "feedback/project_import.html", context)
