from django.contrib import admin

from training.models import ModelVersion, RetrainSchedule, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "kind", "status", "project", "parent", "reward_model", "snapshot", "created_at"]
    list_filter = ["kind", "status", "project"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["sha256", "path", "metrics", "created_at"]
    actions = ["roll_back_to"]

    @admin.action(description="Make this policy the active one (roll back or forward)")
    def roll_back_to(self, request, queryset):
        from training import services

        for version in queryset.filter(kind=ModelVersion.Kind.POLICY):
            services.activate_policy(version=version, actor=request.user, rollback=True)
            self.message_user(request, f"{version.name} is now the active policy of {version.project or 'all projects'}")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "state", "project", "progress", "produced_version", "created_at", "finished_at"]
    list_filter = ["kind", "state", "project"]
    readonly_fields = ["metrics", "summary", "log", "error", "heartbeat_at", "started_at", "finished_at"]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        from core.exceptions import ApplicationError
        from training import services

        for run in queryset:
            try:
                services.request_cancel(run=run)
            except ApplicationError:
                continue


@admin.register(RetrainSchedule)
class RetrainScheduleAdmin(admin.ModelAdmin):
    list_display = ["project", "is_enabled", "method", "min_new_judgements", "max_hours", "min_agreement", "last_triggered_at"]
    list_filter = ["is_enabled", "method"]
