"""Django admin (superusers only): filters, search, counts, and actions. Every change goes through
`feedback.services`; tables whose rows only services create (prompts, tasks, leases, judgements,
adjudications, snapshots) are read-only here. Training actions live in training's admin."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.forms.models import BaseInlineFormSet

from core.admin import SuperuserOnlyAdmin, SuperuserOnlyTabularInline
from feedback import services
from feedback.models import (
    Adjudication, Assignment, ComparisonTask, Completion, Judgement, Membership, PreferenceSnapshot, Project, Prompt,
)
from feedback.services.projects import PROJECT_FIELDS, LastAdmin, MemberGone


class MembershipFormSet(BaseInlineFormSet):
    """Refuses, as a form error, a save that would leave a project that has an admin without one (the service
    refuses it again under its lock, for a change that raced this form)."""

    def clean(self):
        super().clean()
        had_admin = any(f.instance.pk and f.initial.get("role") == Membership.Role.ADMIN for f in self.forms)
        kept = [f for f in self.forms if f.has_changed() or f.instance.pk]
        keeps_admin = any(f.cleaned_data.get("role") == Membership.Role.ADMIN for f in kept
                          if getattr(f, "cleaned_data", None) and not f.cleaned_data.get("DELETE"))
        if had_admin and not keeps_admin:
            raise forms.ValidationError(LastAdmin.default_message)


class MembershipAdminForm(forms.ModelForm):
    def clean_role(self):
        role = self.cleaned_data["role"]
        member = self.instance
        if member.pk and member.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN and not (
                Membership.objects.filter(project_id=member.project_id, role=Membership.Role.ADMIN)
                .exclude(pk=member.pk).exists()):
            raise forms.ValidationError(LastAdmin.default_message)
        return role


def _is_last_admin(membership) -> bool:
    return membership.role == Membership.Role.ADMIN and not Membership.objects.filter(
        project_id=membership.project_id, role=Membership.Role.ADMIN).exclude(pk=membership.pk).exists()


class ReadOnlyAdmin(SuperuserOnlyAdmin):
    """Rows written by services only: the admin shows them and never adds, edits or deletes them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(SuperuserOnlyTabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    fields = ["user", "role", "trust"]
    readonly_fields = ["trust"]
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(SuperuserOnlyAdmin):
    list_display = ["slug", "name", "completions_per_task", "overlap", "max_overlap", "lease_seconds", "gold_rate", "n_prompts", "n_tasks", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]
    actions = ["export_preferences", "recompute_trust"]

    def get_readonly_fields(self, request, obj=None):
        return ["slug"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name in PROJECT_FIELDS}
            services.update_project(project=Project.objects.get(pk=obj.pk), actor=request.user, **changes)
            return
        values = {name: form.cleaned_data[name] for name in PROJECT_FIELDS if name in form.cleaned_data}
        created = services.create_project(slug=form.cleaned_data["slug"], actor=request.user, **values)
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        changed = formset.save(commit=False)
        try:  # promotions first, so a swap of admins in one save never passes through zero admins
            for membership in sorted(changed, key=lambda m: m.role != Membership.Role.ADMIN):
                if membership.pk is None:
                    services.add_member(project=form.instance, username=membership.user.username,
                                        role=membership.role, actor=request.user, issue_token=False)
                else:
                    services.change_role(membership=membership, role=membership.role, actor=request.user)
            for membership in formset.deleted_objects:
                services.remove_member(membership=membership, actor=request.user)
        except (LastAdmin, MemberGone) as refusal:  # a change that raced the form's own check
            self.message_user(request, refusal.message, level=messages.ERROR)

    @admin.action(description="Export preferences (JSONL snapshot into EXPORT_DIR)")
    def export_preferences(self, request, queryset):
        for project in queryset:
            snapshot, stats = services.export_preferences(project=project, actor=request.user)
            self.message_user(request, f"{project.slug}: snapshot {snapshot.pk} with {stats.counts()['pairs']} pairs in {snapshot.path}")

    @admin.action(description="Recompute annotators' trust (gold accuracy and agreement)")
    def recompute_trust(self, request, queryset):
        for project in queryset:
            scores = services.recompute_trust(project=project)
            self.message_user(request, f"{project.slug}: trust recomputed for {len(scores)} members")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            prompt_count=Count("prompts", distinct=True), task_count=Count("tasks", distinct=True)
        )

    @admin.display(ordering="prompt_count", description="prompts")
    def n_prompts(self, obj):
        return obj.prompt_count

    @admin.display(ordering="task_count", description="tasks")
    def n_tasks(self, obj):
        return obj.task_count


@admin.register(Membership)
class MembershipAdmin(SuperuserOnlyAdmin):
    form = MembershipAdminForm
    list_display = ["user", "project", "role", "trust", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]
    readonly_fields = ["trust"]

    def get_readonly_fields(self, request, obj=None):
        return ["project", "user", "trust"] if obj is not None else ["trust"]

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj is not None and _is_last_admin(obj))

    def save_model(self, request, obj, form, change):
        if change:
            membership = services.change_role(membership=obj, role=obj.role, actor=request.user)
        else:
            membership, _ = services.add_member(project=obj.project, username=obj.user.username, role=obj.role,
                                                actor=request.user, issue_token=False)
        obj.pk, obj._state.adding, obj._state.db = membership.pk, False, membership._state.db

    def delete_model(self, request, obj):
        services.remove_member(membership=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        refused = []
        for membership in queryset.select_related("project", "user"):
            try:
                services.remove_member(membership=membership, actor=request.user)
            except LastAdmin:
                refused.append(f"{membership.user.username} in {membership.project.slug}")
        if refused:
            self.message_user(request, f"{LastAdmin.default_message} Kept: {', '.join(refused)}.", level=messages.ERROR)


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["id", "external_id", "project", "short_text", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


@admin.register(Completion)
class CompletionAdmin(ReadOnlyAdmin):
    list_display = ["id", "prompt", "model_name", "model_version", "created_at"]
    list_filter = ["model_name"]
    search_fields = ["text", "model_name"]
    raw_id_fields = ["prompt", "model_version"]
    show_full_result_count = False


@admin.register(ComparisonTask)
class ComparisonTaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "prompt", "status", "judgements_done", "judgements_needed", "slots_taken", "is_gold", "priority"]
    list_filter = ["project", "status", "is_gold"]
    search_fields = ["prompt__external_id", "prompt__text"]
    raw_id_fields = ["prompt", "completions"]
    show_full_result_count = False
    actions = ["make_gold_from_consensus"]

    @admin.action(description="Make gold: the judges' consensus (or the adjudication) becomes the known answer")
    def make_gold_from_consensus(self, request, queryset):
        made = sum(services.mark_gold_from_consensus(task=task, actor=request.user) is not None for task in queryset)
        self.message_user(request, f"{made} task(s) are gold now; tasks without judgements were left alone.")


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "annotator", "state", "leased_at", "leased_until", "finished_at"]
    list_filter = ["state", "project"]
    search_fields = ["annotator__username"]
    raw_id_fields = ["task"]
    show_full_result_count = False


@admin.register(Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    """Judgements are evidence: stored once, never edited."""

    list_display = ["id", "task", "annotator", "ranking_labels", "flags", "confidence", "seconds_spent", "created_at"]
    list_filter = ["task__project", "confidence"]
    search_fields = ["annotator__username", "comment"]
    raw_id_fields = ["task", "assignment"]
    show_full_result_count = False


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ["task", "reviewer", "ranking", "created_at"]
    raw_id_fields = ["task"]
    search_fields = ["reviewer__username", "note"]


@admin.register(PreferenceSnapshot)
class PreferenceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "state", "sha256", "agreement", "created_at"]
    list_filter = ["project", "state"]
