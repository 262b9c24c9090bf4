from django.contrib import admin

from training.models import ModelVersion, PreferenceSnapshot, TrainingRun


@admin.register(PreferenceSnapshot)
class PreferenceSnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "sha256", "agreement", "created_at"]
    list_filter = ["project"]
    readonly_fields = ["sha256", "judgement_ids", "counts", "created_at"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "kind", "status", "project", "parent", "reward_model", "snapshot", "created_at"]
    list_filter = ["kind", "status", "project"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["sha256", "path", "metrics", "created_at"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "state", "project", "progress", "produced_version", "created_at", "finished_at"]
    list_filter = ["kind", "state", "project"]
    readonly_fields = ["metrics", "summary", "log", "error", "heartbeat_at", "started_at", "finished_at"]
