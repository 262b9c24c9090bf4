from django.urls import path

from training.api import views

urlpatterns = [
    path("training-runs/", views.TrainingRunListCreateApi.as_view(), name="api-training-runs"),
    path("training-runs/<int:run_id>/", views.TrainingRunDetailApi.as_view(), name="api-training-run"),
    path("training-runs/<int:run_id>/cancel/", views.TrainingRunCancelApi.as_view(), name="api-training-run-cancel"),
    path("model-versions/", views.ModelVersionListApi.as_view(), name="api-model-versions"),
    path("model-versions/<int:version_id>/", views.ModelVersionDetailApi.as_view(), name="api-model-version"),
    path("model-versions/<int:version_id>/activate/", views.ModelVersionActivateApi.as_view(), name="api-model-version-activate"),
    path("model-versions/<int:version_id>/score/", views.ModelVersionScoreApi.as_view(), name="api-model-version-score"),
]
