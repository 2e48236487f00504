"""Rate limits of the public recipient pages: fixed windows counted in Redis (the cache), one
round trip per check, answered with a small 429 page.

Limits are named in settings.MLM_RATE_LIMITS (overridable through the environment). Keys are
the client's address, a recipient's code, or the keyed hash of an address typed into the
subscription form, hashed once more before they become Redis keys: the store holds no address.

Why not django-ratelimit: it fits, and we used it first, but it counts through Django's cache
API — SET NX, EXISTS and INCRBY, each with a new redis-py client object — and measured 0.72 to
0.82 ms of CPU per check against 0.15 ms for one pipelined SET NX/INCR/TTL (bench of 2,000 checks
on this 2-core machine). The one-click endpoint checks twice per request and must serve 300
requests/s on two cores, so we count here, in thirty lines.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from functools import lru_cache, wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from redis import Redis

log = logging.getLogger(__name__)

_RATE = re.compile(r"(\d+)/(\d*)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'120/m' -> (120, 60); '5/30s' -> (5, 30)."""
    count, multiple, unit = _RATE.fullmatch(rate).groups()
    return int(count), int(multiple or 1) * _SECONDS[unit]


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind a trusted proxy the last X-Forwarded-For
    entry (the one our proxy appended; earlier entries are whatever the client sent)."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"  # noqa: S104 - a key, not a bind


@lru_cache(maxsize=8)
def _redis(location: str) -> Redis:
    # One client (and its connection pool) per process: Django's cache makes a new one per call.
    return Redis.from_url(location, socket_connect_timeout=0.5, socket_timeout=0.5)


# Each key: start its window if none is open, count the hit, answer (count, seconds left). One
# EVALSHA for all the keys of a request: the one-click endpoint checks two limits per request,
# and one command costs less CPU in redis-py than the six of a pipeline (bench/unsubscribe.py).
_COUNT = """
local answers = {}
for i, key in ipairs(KEYS) do
    local period = tonumber(ARGV[i])
    redis.call('SET', key, 0, 'EX', period, 'NX')
    local count = redis.call('INCR', key)
    local ttl = redis.call('TTL', key)
    if ttl <= 0 then ttl = period end
    answers[2 * i - 1] = count
    answers[2 * i] = ttl
end
return answers
"""


@lru_cache(maxsize=8)
def _count_script(location: str):
    return _redis(location).register_script(_COUNT)


def _hits(keys: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Count one hit on each (key, period) in its window, in one round trip: for each, (hits so
    far, seconds until the window ends)."""
    alias = getattr(settings, "MLM_RATE_LIMIT_CACHE", "default")
    location = settings.CACHES[alias]["LOCATION"]
    location = location[0] if isinstance(location, list | tuple) else location
    answers = _count_script(location)(
        keys=[key for key, _ in keys], args=[period for _, period in keys]
    )
    return [(answers[2 * i], answers[2 * i + 1]) for i in range(len(keys))]


def exceeded_any(checks: list[tuple[str, str]]) -> int | None:
    """Count one hit on each (limit, key); if any limit is exceeded, the seconds until the
    longest such window ends.

    Fails open: if the counter store cannot be reached, a person must still be able to
    unsubscribe.
    """
    return exceeded_rates([(limit, key, settings.MLM_RATE_LIMITS[limit]) for limit, key in checks])


def exceeded_rates(checks: list[tuple[str, str, str]]) -> int | None:
    """`exceeded_any` for (name, key, rate) where the rate ('600/m') is not a named limit."""
    prefix = getattr(settings, "MLM_RATE_LIMIT_PREFIX", "mlm:rl:")
    rates = [parse_rate(rate) for _, _, rate in checks]
    keys = [
        (f"{prefix}{limit}:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}", period)
        for (limit, key, _), (_, period) in zip(checks, rates, strict=True)
    ]
    try:
        counts = _hits(keys)
    except Exception:
        names = ", ".join(limit for limit, _, _ in checks)
        log.warning("rate limit %s not counted: the counter store is unreachable", names)
        return None
    over = [
        max(left, 1)
        for (count, left), (allowed, _) in zip(counts, rates, strict=True)
        if count > allowed
    ]
    return max(over) if over else None


def exceeded(request: HttpRequest, *, limit: str, key: str) -> int | None:
    """Count one hit on `limit` for `key`; seconds until the window ends if it is exceeded."""
    return exceeded_any([(limit, key)])


def limited(
    limit: str,
    *,
    methods: tuple[str, ...] = ("GET", "HEAD", "POST"),
    too_many: Callable[[HttpRequest, int], HttpResponse],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a public view: requests of `methods` count on `limit` per client address; past
    it `too_many(request, retry_after)` answers instead of the view."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method in methods:
                retry_after = exceeded(request, limit=limit, key=client_ip(request))
                if retry_after is not None:
                    return too_many(request, retry_after)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
