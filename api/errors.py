"""Every API error as RFC 9457 problem details (application/problem+json).

`{"type", "title", "status", "detail"}`, and for validation errors `errors`: a list of
`{"field", "message"}`. Django's own exceptions (Http404, PermissionDenied, ValidationError,
which services raise with the rule broken) are answered the same way; anything else is logged and
answered 500 without its message.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


def _flatten(detail: Any, field: str = "") -> list[dict[str, str]]:
    """DRF's nested error detail as a flat list of {field, message}; "" is the whole body."""
    if isinstance(detail, dict):
        found = []
        for name, value in detail.items():
            if isinstance(name, int) or str(name).isdigit():  # a ListField's items
                path = f"{field}[{name}]"
            elif name in ("non_field_errors", "__all__"):
                path = field
            else:
                path = f"{field}.{name}" if field else str(name)
            found += _flatten(value, path)
        return found
    if isinstance(detail, list):
        found = []
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list) and not isinstance(value, str)
            found += _flatten(value, f"{field}[{index}]" if nested else field)
        return found
    return [{"field": field, "message": str(detail)}]


def problem(status: int, detail: str, **extra: Any) -> Response:
    """A problem-details response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(body, status=status, content_type=PROBLEM_TYPE)


def _django_to_drf(exc: Exception) -> Exception:
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """REST framework's EXCEPTION_HANDLER: a problem for every error, never an HTML page."""
    exc = _django_to_drf(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        request: Request | None = context.get("request")
        log.exception(
            "API error on %s %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
            exc_info=exc,
        )
        return problem(500, "The server failed to answer this request; it has been logged.")
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        answer = problem(
            response.status_code,
            errors[0]["message"] if len(errors) == 1 else "The request has invalid fields.",
            errors=errors,
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        answer = problem(response.status_code, str(detail))
    for header, value in response.headers.items():
        if header.lower() in ("www-authenticate", "retry-after", "allow"):
            answer[header] = value
    return answer
