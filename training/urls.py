from django.urls import path

from core import converters  # noqa: F401  (registers <id:…> and <ref:…>: ASCII, bounded length)

from training import views

app_name = "training"
urlpatterns = [
    path("", views.registry, name="registry"),
    path("runs/<id:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<id:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<id:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("projects/<slug:slug>/start/", views.run_start, name="run-start"),
    path("projects/<slug:slug>/dpo-round/", views.dpo_round_advance, name="dpo-round"),
    path("rounds/<id:round_id>/abandon/", views.dpo_round_abandon, name="dpo-round-abandon"),
]
