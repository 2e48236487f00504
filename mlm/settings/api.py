"""The REST API (api/): keys of a unit, cursor pages, problem-details errors, a rate per key."""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

from mlm.env import env_str

MLM_API_RATE = env_str(
    "MLM_API_RATE",
    "600/m",
    "Requests one API key may make per window, as count/period (s, m, h, d), e.g. 600/m or 50/s.",
)
if not re.fullmatch(r"\d+/\d*[smhd]", MLM_API_RATE):
    raise ImproperlyConfigured(f"MLM_API_RATE: cannot read {MLM_API_RATE!r} (e.g. 600/m).")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.KeyRole"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ApiKeyThrottle"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.ApiCursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MLM API",
    "DESCRIPTION": "Consent, recipients, lists and more of one sender unit, for other systems. "
    "Every request carries a key of the unit: `Authorization: Bearer <key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}
