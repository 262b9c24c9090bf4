from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("", views.registry, name="registry"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("projects/<slug:slug>/start/", views.run_start, name="run-start"),
]
