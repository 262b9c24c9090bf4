from django.urls import path

from core import converters  # noqa: F401  (registers <id:…> and <ref:…>: ASCII, bounded length)

from feedback import views

app_name = "feedback"
urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("p/<slug:slug>/", views.project_detail, name="project-detail"),
    path("p/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path("p/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
    path("p/<slug:slug>/review/", views.review, name="review"),
    path("p/<slug:slug>/tasks/<id:task_id>/submit/", views.submit, name="submit"),
    path("p/<slug:slug>/tasks/<id:task_id>/skip/", views.skip, name="skip"),
]
