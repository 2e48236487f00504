"""Per-key rate limit: settings.MLM_API_RATE requests per window, counted in Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from api.models import ApiKey
from mlm.ratelimit import exceeded_rates

if TYPE_CHECKING:  # REST framework imports these classes from settings: no cycle
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ApiKeyThrottle(BaseThrottle):
    """Counts every request of a key in a fixed window; past the rate, 429 with Retry-After."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True  # no key: authentication answers 401 first
        self.retry_after = exceeded_rates([("api_key", str(key.code), settings.MLM_API_RATE)])
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after
