"""Public recipient pages, no login: /u/ unsubscribe, /p/ preferences, /s/ subscribe."""

from django.urls import path

from consent import public_views

urlpatterns = [
    path("u/<str:token>/", public_views.unsubscribe, name="public_unsubscribe"),
    path("u/<str:token>/one-click", public_views.one_click, name="public_one_click"),
    path("u/<str:token>/undo", public_views.undo, name="public_undo"),
    path("p/<str:token>/", public_views.preferences, name="public_preferences"),
    path("s/confirm/<str:token>/", public_views.subscribe_confirm, name="public_subscribe_confirm"),
    path("s/<slug:slug>/", public_views.subscribe, name="public_subscribe"),
]
