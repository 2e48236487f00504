"""Import, directory sync and export pages of a list (included under /units/<slug>/)."""

from django.urls import path

from recipients import import_views as views

urlpatterns = [
    path("lists/<uuid:list_code>/import/", views.import_upload, name="import_upload"),
    path("lists/<uuid:list_code>/sync/", views.import_sync, name="import_sync"),
    path("lists/<uuid:list_code>/imports/", views.import_list, name="import_list"),
    path("lists/<uuid:list_code>/import/<uuid:job_code>/", views.import_job, name="import_job"),
    path(
        "lists/<uuid:list_code>/import/<uuid:job_code>/reread/",
        views.import_reread,
        name="import_reread",
    ),
    path(
        "lists/<uuid:list_code>/import/<uuid:job_code>/rejected.csv",
        views.import_rejected,
        name="import_rejected",
    ),
    path("lists/<uuid:list_code>/export.csv", views.list_export, name="list_export"),
]
