"""Send-rate limits shared by every worker: token buckets and a concurrency limit, in Redis.

- `Throttle.acquire(key, n, rate=, burst=)` takes `n` tokens from a token bucket (refilled at
  `rate` per second up to `burst`) and answers 0, or takes nothing and answers how many seconds
  to wait until `n` tokens will be there. `acquire_all` does the same over several buckets at
  once (a unit's and a backend's): tokens are taken from all of them or from none, so a send
  loop never pays one bucket for a message another bucket held back.
- `ConcurrencyLimiter` counts in-flight sends per recipient domain. Each slot is a lease with its
  own expiry (a sorted set scored by expiry time), not a bare counter: a worker killed with -9
  never releases its slot, and its lease simply runs out; a plain INCR/DECR counter would leak
  the slot for as long as anyone keeps the key alive.

Both run as Lua scripts (atomic in Redis) and read Redis's clock (`TIME`), so workers on
machines whose clocks disagree still share one rate. Keys expire when idle. A `clock` given to
either (seconds, e.g. a test's clock it moves by hand) replaces Redis's.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import cache

import redis
from django.conf import settings

PREFIX = "mlm:throttle:"

_BUCKETS_LUA = """
-- KEYS: buckets. ARGV[1]: tokens wanted; then rate (per second) and burst for each bucket;
-- then, optionally, the time now in seconds (else Redis's clock).
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2 * #KEYS + 2])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local level, ts = tonumber(state[1]), tonumber(state[2])
  if level == nil or ts == nil then
    level, ts = burst, now
  end
  level = math.min(burst, level + math.max(0, now - ts) * rate)
  levels[i] = level
  if level < n then
    wait = math.max(wait, (n - level) / rate)
  end
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local level = levels[i]
  if wait == 0 then
    level = level - n
  end
  redis.call('HSET', key, 'tokens', tostring(level), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return tostring(wait)
"""

# Each lease script's clock: the time given in ms (an injected clock), else Redis's.
_NOW_MS_LUA = """
local function now_ms(given)
  if tonumber(given) ~= nil then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_LEASE_ACQUIRE_LUA = f"""{_NOW_MS_LUA}
-- KEYS[1]: the slots. ARGV: limit, lease in ms, lease id, optionally the time now in ms.
local now = now_ms(ARGV[4])
local lease_ms = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease_ms then
  redis.call('PEXPIRE', KEYS[1], lease_ms)
end
return 1
"""

_LEASE_RENEW_LUA = f"""{_NOW_MS_LUA}
-- KEYS[1]: the slots. ARGV: lease in ms, lease id, optionally the time now in ms. 1 if the
-- lease was still ours.
local now = now_ms(ARGV[3])
local lease_ms = tonumber(ARGV[1])
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not expiry or tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease_ms then
  redis.call('PEXPIRE', KEYS[1], lease_ms)
end
return 1
"""

_LEASE_COUNT_LUA = f"""{_NOW_MS_LUA}
-- KEYS[1]: the slots. ARGV: optionally the time now in ms.
local now = now_ms(ARGV[1])
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


def unit_key(unit_id: int) -> str:
    """The bucket of a sender unit's rate."""
    return f"{PREFIX}unit:{unit_id}"


def backend_key(backend: str) -> str:
    """The bucket of a mail backend's rate (e.g. "smtp:relay.example.edu", "ses")."""
    return f"{PREFIX}backend:{backend}"


def domain_key(domain: str) -> str:
    """The slots of one recipient domain's concurrency limit."""
    return f"{PREFIX}domain:{domain.strip().lower()}"


def _check_bucket(n: float, rate: float, burst: float) -> None:
    if rate <= 0 or burst <= 0:
        raise ValueError("A bucket needs a positive rate and burst.")
    if n > burst:
        raise ValueError(f"{n} tokens can never be taken from a bucket of burst {burst}.")


Clock = Callable[[], float]  # the time now, in seconds


class Throttle:
    """Token buckets in Redis, shared by all workers."""

    def __init__(self, client: redis.Redis, *, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock
        self._buckets = client.register_script(_BUCKETS_LUA)

    def acquire(self, key: str, n: float = 1, *, rate: float, burst: float) -> float:
        """Take `n` tokens and answer 0, or take none and answer the seconds to wait."""
        return self.acquire_all([(key, rate, burst)], n)

    def acquire_all(self, buckets: Sequence[tuple[str, float, float]], n: float = 1) -> float:
        """`acquire` over several (key, rate, burst) buckets: from all of them or from none."""
        args: list[float] = [n]
        for _, rate, burst in buckets:
            _check_bucket(n, rate, burst)
            args += [rate, burst]
        if self.clock is not None:
            args.append(self.clock())
        return float(self._buckets(keys=[key for key, _, _ in buckets], args=args))

    def take(
        self,
        buckets: Sequence[tuple[str, float, float]],
        n: float = 1,
        *,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Wait until `n` tokens are taken from every bucket; answer the seconds waited.

        Raises TimeoutError (taking nothing) if that would take longer than `timeout`.
        """
        waited = 0.0
        while (wait := self.acquire_all(buckets, n)) > 0:
            if timeout is not None and waited + wait > timeout:
                raise TimeoutError(f"no tokens within {timeout} s")
            sleep(wait)
            waited += wait
        return waited


class ConcurrencyLimiter:
    """At most `limit` leases per key at a time; a lease not renewed runs out by itself."""

    def __init__(self, client: redis.Redis, *, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock
        self._acquire = client.register_script(_LEASE_ACQUIRE_LUA)
        self._renew = client.register_script(_LEASE_RENEW_LUA)
        self._count = client.register_script(_LEASE_COUNT_LUA)

    def acquire(self, key: str, *, limit: int, lease_seconds: float) -> str | None:
        """A lease id if a slot was free (now held for `lease_seconds`), else None."""
        lease = uuid.uuid4().hex
        args = [limit, int(lease_seconds * 1000), lease, *self._now_ms()]
        taken = self._acquire(keys=[key], args=args)
        return lease if taken else None

    def renew(self, key: str, lease: str, *, lease_seconds: float) -> bool:
        """Extend a held lease; False if it had already run out (the slot may be someone's)."""
        args = [int(lease_seconds * 1000), lease, *self._now_ms()]
        return bool(self._renew(keys=[key], args=args))

    def _now_ms(self) -> list[int]:
        """The injected clock's time in ms, as a script argument; none for Redis's clock."""
        return [] if self.clock is None else [int(self.clock() * 1000)]

    def release(self, key: str, lease: str) -> bool:
        """Give the slot back; False if the lease had already gone."""
        return bool(self.client.zrem(key, lease))

    def holders(self, key: str) -> int:
        """How many leases are live now."""
        return int(self._count(keys=[key], args=self._now_ms()))

    @contextlib.contextmanager
    def slot(
        self,
        key: str,
        *,
        limit: int,
        lease_seconds: float,
        timeout: float = 0,
        poll: float = 0.05,
    ) -> Iterator[str]:
        """Hold a slot for the block, waiting up to `timeout` seconds for one to free up."""
        deadline = time.monotonic() + timeout
        while (lease := self.acquire(key, limit=limit, lease_seconds=lease_seconds)) is None:
            if time.monotonic() + poll > deadline:
                raise TimeoutError(f"no free slot of {limit} for {key}")
            time.sleep(poll)
        try:
            yield lease
        finally:
            self.release(key, lease)


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def throttle() -> Throttle:
    """The shared throttle, in Redis (the embedded one under `make run`)."""
    return _throttle(settings.REDIS_URL)


@cache
def _throttle(url: str) -> Throttle:
    return Throttle(_client(url))


@cache
def _limiter(url: str) -> ConcurrencyLimiter:
    return ConcurrencyLimiter(_client(url))


def concurrency_limiter() -> ConcurrencyLimiter:
    """The shared per-domain concurrency limiter, in Redis."""
    return _limiter(settings.REDIS_URL)


def acquire(key: str, n: float = 1, *, rate: float, burst: float) -> float:
    """Take `n` tokens from the shared bucket `key` (0), or say how many seconds to wait."""
    return throttle().acquire(key, n, rate=rate, burst=burst)
