from django.urls import path

from core import converters  # noqa: F401  (registers <id:…> and <ref:…>: ASCII, bounded length)

from feedback.pages import annotate, dashboard, exports, members, projects, review, tasks

app_name = "feedback"
urlpatterns = [
    path("", annotate.project_list, name="project-list"),
    path("projects/new/", projects.project_create, name="project-create"),
    path("p/<slug:slug>/", annotate.project_detail, name="project-detail"),
    path("p/<slug:slug>/annotate/", annotate.annotate, name="annotate"),
    path("p/<slug:slug>/dashboard/", dashboard.dashboard, name="dashboard"),
    path("p/<slug:slug>/review/", review.review, name="review"),
    path("p/<slug:slug>/review/<id:task_id>/", review.review_task, name="review-task"),
    path("p/<slug:slug>/exports/", exports.exports, name="exports"),
    path("p/<slug:slug>/exports/<id:snapshot_id>/download/", exports.snapshot_download, name="snapshot-download"),
    path("p/<slug:slug>/settings/", projects.project_settings, name="project-settings"),
    path("p/<slug:slug>/import/", projects.project_import, name="project-import"),
    path("p/<slug:slug>/members/", members.members, name="members"),
    path("p/<slug:slug>/members/<id:membership_id>/role/", members.member_role, name="member-role"),
    path("p/<slug:slug>/members/<id:membership_id>/remove/", members.member_remove, name="member-remove"),
    path("p/<slug:slug>/members/<id:membership_id>/token/", members.member_token, name="member-token"),
    path("p/<slug:slug>/tasks/<id:task_id>/submit/", annotate.submit, name="submit"),
    path("p/<slug:slug>/tasks/<id:task_id>/skip/", annotate.skip, name="skip"),
    path("p/<slug:slug>/tasks/<id:task_id>/lease/", annotate.lease_renew, name="lease-renew"),
    path("p/<slug:slug>/tasks/", tasks.task_list, name="task-list"),
    path("p/<slug:slug>/tasks/<id:task_id>/", tasks.task_detail, name="task-detail"),
    path("p/<slug:slug>/tasks/<id:task_id>/revise/", tasks.revise, name="revise"),
    path("p/<slug:slug>/history/", tasks.history, name="history"),
]
