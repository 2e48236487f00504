"""Segment pages of a unit (included under /units/<slug>/)."""

from django.urls import path

from recipients import segment_views as views

urlpatterns = [
    path("segments/", views.segment_list, name="segments"),
    path("segments/new/", views.segment_create, name="segment_create"),
    path("segments/count/", views.segment_count, name="segment_count"),
    path("segments/<uuid:segment_code>/", views.segment_edit, name="segment_edit"),
    path("segments/<uuid:segment_code>/delete/", views.segment_delete, name="segment_delete"),
]
