from django.urls import path

from core import converters  # noqa: F401  (registers <id:…> and <ref:…>: ASCII, bounded length)

from training.api import views

urlpatterns = [
    path("training-runs/", views.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("training-runs/<id:run_id>/", views.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path("training-runs/<id:run_id>/cancel/", views.TrainingRunCancelApi.as_view(), name="api-training-run-cancel"),
    path("dpo-rounds/", views.DPORoundListApi.as_view(), name="api-dpo-rounds"),
    path("dpo-rounds/<id:round_id>/", views.DPORoundDetailApi.as_view(), name="api-dpo-round"),
    path("dpo-rounds/<id:round_id>/abandon/", views.DPORoundAbandonApi.as_view(), name="api-dpo-round-abandon"),
    path("model-versions/", views.ModelVersionListApi.as_view(), name="api-model-versions"),
    path("model-versions/<id:version_id>/", views.ModelVersionDetailApi.as_view(), name="api-model-version"),
    path("model-versions/<id:version_id>/activate/", views.ModelVersionActivateApi.as_view(), name="api-model-version-activate"),
    path("model-versions/<id:version_id>/score/", views.ModelVersionScoreApi.as_view(), name="api-model-version-score"),
]
