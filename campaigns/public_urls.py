"""Public pages of campaigns, no login: /w/ the web version of a mail."""

from django.urls import path

from campaigns import public_views

urlpatterns = [
    path("w/<str:token>/", public_views.web_version, name="public_web_version"),
]
