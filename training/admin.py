"""Django admin of the training app (superusers only): the registry, runs, schedules, and the project
actions that start training. Every action goes through the same services as the API and the pages."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError

from core.admin import ReadOnlyAdmin, SuperuserOnlyAdmin, SuperuserOnlyTabularInline
from core.exceptions import ApplicationError
from feedback.admin import ProjectAdmin
from feedback.models import Project
from training import services
from training.services.schedule import check_schedule_config
from training.models import DPORound, ModelVersion, RetrainSchedule, TrainingRun, TrainingRunMetric

TRAINING_ACTIONS = ["train_reward_model", "train_policy_ppo", "train_policy_dpo", "publish_samples"]


class TrainingProjectAdmin(ProjectAdmin):
    """feedback's ProjectAdmin plus the actions that start runs (training depends on feedback, not back)."""

    actions = [*dict.fromkeys([*ProjectAdmin.actions, *TRAINING_ACTIONS])]

    def _start(self, request, queryset, kind):
        for project in queryset:
            try:
                run = services.start_training(project=project, kind=kind, config={}, created_by=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{project.slug}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            except ApplicationError as exc:  # e.g. the project's queue is full
                self.message_user(request, f"{project.slug}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{project.slug}: queued {kind} run {run.pk} (see /training/runs/{run.pk}/)")

    @admin.action(description="Train a reward model (in the worker)")
    def train_reward_model(self, request, queryset):
        self._start(request, queryset, TrainingRun.Kind.REWARD)

    @admin.action(description="Improve the policy with PPO (in the worker)")
    def train_policy_ppo(self, request, queryset):
        self._start(request, queryset, TrainingRun.Kind.PPO)

    @admin.action(description="Improve the policy with DPO (in the worker)")
    def train_policy_dpo(self, request, queryset):
        self._start(request, queryset, TrainingRun.Kind.DPO)

    @admin.action(description="Publish new samples from the active policy (in the worker)")
    def publish_samples(self, request, queryset):
        self._start(request, queryset, TrainingRun.Kind.PUBLISH)


admin.site.unregister(Project)
admin.site.register(Project, TrainingProjectAdmin)


class ActivateForm(ActionForm):
    """The action bar's extra field: the project a policy becomes active for (a default policy has none)."""

    project = forms.ModelChoiceField(Project.objects.order_by("slug"), required=False,
                                     help_text="For a default (project-less) policy: the project it samples for.")


@admin.register(ModelVersion)
class ModelVersionAdmin(SuperuserOnlyAdmin):
    list_display = ["id", "name", "kind", "status", "project", "parent", "reward_model", "snapshot", "created_at"]
    list_filter = ["kind", "status", "project"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["sha256", "path", "metrics", "created_at"]
    actions = ["roll_back_to"]
    action_form = ActivateForm

    @admin.action(description="Make this policy the active one (roll back or forward; choose the project for a default policy)")
    def roll_back_to(self, request, queryset):
        try:
            chosen = ActivateForm.base_fields["project"].clean(request.POST.get("project") or None)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        for version in queryset:
            try:
                version = services.activate_policy(version=version, project=chosen, actor=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{version.name}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            self.message_user(request, f"{version.name} is now the active policy of {chosen or version.project}")


class TrainingRunMetricInline(SuperuserOnlyTabularInline):
    model = TrainingRunMetric
    extra = 0
    can_delete = False
    readonly_fields = ["step", "metrics", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(SuperuserOnlyAdmin):
    list_display = ["id", "kind", "state", "project", "progress", "produced_version", "created_at", "finished_at"]
    list_filter = ["kind", "state", "project"]
    readonly_fields = ["summary", "log", "error", "heartbeat_at", "started_at", "finished_at"]
    inlines = [TrainingRunMetricInline]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        for run in queryset:
            try:
                services.request_cancel(run=run, actor=request.user)
            except ApplicationError:
                continue


class RetrainScheduleForm(forms.ModelForm):
    """A schedule's step settings are checked when it is saved (each step's stated ranges), not when it fires."""

    class Meta:
        model = RetrainSchedule
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        try:
            check_schedule_config(method=cleaned.get("method") or RetrainSchedule.Method.PPO,
                                  steps=cleaned.get("config") or {})
        except ValidationError as exc:
            self.add_error("config", exc)
        return cleaned


@admin.register(RetrainSchedule)
class RetrainScheduleAdmin(SuperuserOnlyAdmin):
    form = RetrainScheduleForm
    list_display = ["project", "is_enabled", "method", "min_new_judgements", "max_hours", "min_agreement", "last_triggered_at"]
    list_filter = ["is_enabled", "method"]


@admin.register(DPORound)
class DPORoundAdmin(ReadOnlyAdmin):
    """Read-only: a round moves only through its services (the "DPO round" button, the command, the API, the
    worker), which keep its runs, tasks and audit rows consistent; here a superuser looks across projects."""

    list_display = ["id", "project", "state", "policy", "reward_model", "human_pairs", "model_pairs", "budget",
                    "sample_run", "train_run", "created_at", "finished_at"]
    list_filter = ["state", "project"]
    search_fields = ["project__slug", "policy__name", "reward_model__name", "error"]
    list_select_related = ["project", "policy", "reward_model", "sample_run", "train_run"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in DPORound._meta.fields] + ["tasks"]
    actions = []

    @admin.display(description="pairs from people")
    def human_pairs(self, obj):
        return obj.counts.get("human_pairs", "–")

    @admin.display(description="pairs from the reward model")
    def model_pairs(self, obj):
        return obj.counts.get("model_pairs", "–")
