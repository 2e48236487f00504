"""The unit's API keys page, included under /units/<slug>/."""

from django.urls import path

from api import key_views

urlpatterns = [
    path("api-keys/", key_views.api_key_list, name="api_keys"),
    path("api-keys/<uuid:api_key_code>/revoke/", key_views.api_key_revoke, name="api_key_revoke"),
]
