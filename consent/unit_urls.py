"""DM type pages of a unit, included under /units/<slug>/ (the public pages have their own)."""

from django.urls import path

from consent import views

urlpatterns = [
    path("dm-types/", views.dm_type_list, name="dm_types"),
    path("dm-types/new/", views.dm_type_create, name="dm_type_create"),
    path("dm-types/<uuid:dm_type_code>/", views.dm_type_detail, name="dm_type_detail"),
    path("dm-types/<uuid:dm_type_code>/edit/", views.dm_type_edit, name="dm_type_edit"),
    path("dm-types/<uuid:dm_type_code>/archive/", views.dm_type_archive, name="dm_type_archive"),
]
