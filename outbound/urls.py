"""The endpoints page of a unit (included under /units/<slug>/endpoints/)."""

from django.urls import path

from outbound import views

urlpatterns = [
    path("", views.endpoint_list, name="endpoints"),
    path("<uuid:endpoint_code>/rotate/", views.endpoint_rotate, name="endpoint_rotate"),
    path("<uuid:endpoint_code>/pause/", views.endpoint_pause, name="endpoint_pause"),
    path("<uuid:endpoint_code>/resume/", views.endpoint_resume, name="endpoint_resume"),
    path("<uuid:endpoint_code>/delete/", views.endpoint_delete, name="endpoint_delete"),
]
