"""Django admin for the everyday operations: filters, search, counts, and actions."""

from django.contrib import admin
from django.db.models import Count

from feedback.models import Assignment, AuditEvent, ComparisonTask, Completion, Judgement, Membership, Project, Prompt


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "completions_per_task", "overlap", "lease_seconds", "gold_rate", "n_prompts", "n_tasks", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

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
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "trust", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "external_id", "project", "short_text", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]
    readonly_fields = ["content_hash", "created_at"]
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_name", "model_version", "created_at"]
    list_filter = ["model_name"]
    search_fields = ["text", "model_name"]
    raw_id_fields = ["prompt", "model_version"]
    show_full_result_count = False


@admin.register(ComparisonTask)
class ComparisonTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt", "status", "judgements_done", "judgements_needed", "slots_taken", "is_gold", "priority"]
    list_filter = ["project", "status", "is_gold"]
    search_fields = ["prompt__external_id", "prompt__text"]
    raw_id_fields = ["prompt", "completions"]
    show_full_result_count = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "state", "leased_at", "leased_until", "finished_at"]
    list_filter = ["state", "project"]
    search_fields = ["annotator__username"]
    raw_id_fields = ["task"]
    show_full_result_count = False


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "annotator", "ranking_labels", "flags", "confidence", "seconds_spent", "created_at"]
    list_filter = ["task__project", "confidence"]
    search_fields = ["annotator__username", "comment"]
    raw_id_fields = ["task", "assignment"]
    readonly_fields = [f.name for f in Judgement._meta.fields]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False  # judgements are evidence: stored once, never edited


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: visible to admins, never changed or deleted here."""

    list_display = ["created_at", "actor", "event_type", "project", "target"]
    list_filter = ["event_type", "project"]
    search_fields = ["actor__username", "target"]
    readonly_fields = ["created_at", "actor", "event_type", "project", "target", "extra"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
