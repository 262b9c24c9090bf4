"""Django admin for the everyday operations: filters, search, counts, and actions."""

from django.contrib import admin
from django.db.models import Count

from feedback.models import Adjudication, Assignment, ComparisonTask, Completion, Judgement, Membership, Project, Prompt


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "completions_per_task", "overlap", "max_overlap", "lease_seconds", "gold_rate", "n_prompts", "n_tasks", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]
    actions = ["export_preferences", "train_reward_model", "train_policy_ppo", "train_policy_dpo", "publish_samples",
               "recompute_trust"]

    @admin.action(description="Export preferences (JSONL snapshot into EXPORT_DIR)")
    def export_preferences(self, request, queryset):
        from feedback import exports

        for project in queryset:
            snapshot = exports.create_snapshot(project=project, actor=request.user)
            self.message_user(request, f"{project.slug}: snapshot {snapshot.pk} with {snapshot.counts.get('pairs', 0)} pairs in {snapshot.path}")

    def _start(self, request, queryset, kind):
        from training import services as training_services

        for project in queryset:
            run = training_services.start_training(project=project, kind=kind, config={}, created_by=request.user)
            self.message_user(request, f"{project.slug}: queued {kind} run {run.pk} (see /training/runs/{run.pk}/)")

    @admin.action(description="Train a reward model (in the worker)")
    def train_reward_model(self, request, queryset):
        self._start(request, queryset, "reward")

    @admin.action(description="Improve the policy with PPO (in the worker)")
    def train_policy_ppo(self, request, queryset):
        self._start(request, queryset, "ppo")

    @admin.action(description="Improve the policy with DPO (in the worker)")
    def train_policy_dpo(self, request, queryset):
        self._start(request, queryset, "dpo")

    @admin.action(description="Publish new samples from the active policy (in the worker)")
    def publish_samples(self, request, queryset):
        self._start(request, queryset, "publish")

    @admin.action(description="Recompute annotators' trust (gold accuracy and agreement)")
    def recompute_trust(self, request, queryset):
        from feedback import services

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
    actions = ["make_gold_from_consensus"]

    @admin.action(description="Make gold: the judges' consensus (or the adjudication) becomes the known answer")
    def make_gold_from_consensus(self, request, queryset):
        from feedback import exports, services

        made = 0
        for task in queryset.prefetch_related("judgements"):
            adjudication = getattr(task, "adjudication", None)
            if adjudication is not None:
                ranking = adjudication.ranking
            else:
                rankings = [j.ranking for j in task.judgements.all()]
                if not rankings:
                    continue
                ranking = exports.consensus_ranking(rankings)
            services.mark_gold(task=task, ranking=ranking, actor=request.user)
            made += 1
        self.message_user(request, f"{made} task(s) are gold now; tasks without judgements were left alone.")


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


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["task", "reviewer", "ranking", "created_at"]
    raw_id_fields = ["task"]
    search_fields = ["reviewer__username", "note"]
