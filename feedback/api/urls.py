from django.urls import path

from core import converters  # noqa: F401  (registers <id:…> and <ref:…>: ASCII, bounded length)

from feedback.api import views

urlpatterns = [
    path("auth/token/", views.ThrottledObtainAuthToken.as_view(), name="api-token"),
    path("projects/", views.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<ref:project_ref>/", views.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<ref:project_ref>/next-task/", views.NextTaskApi.as_view(), name="api-next-task"),
    path("projects/<ref:project_ref>/stats/", views.ProjectStatsApi.as_view(), name="api-project-stats"),
    path("projects/<ref:project_ref>/import/", views.ProjectImportApi.as_view(), name="api-project-import"),
    path("projects/<ref:project_ref>/export/", views.ProjectExportApi.as_view(), name="api-project-export"),
    path("tasks/<id:task_id>/judgements/", views.JudgementCreateApi.as_view(), name="api-judgement-create"),
    path("tasks/<id:task_id>/skip/", views.TaskSkipApi.as_view(), name="api-task-skip"),
    path("judgements/", views.MyJudgementListApi.as_view(), name="api-my-judgements"),
]
