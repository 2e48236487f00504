"""Send-rate limits in real Redis: token buckets shared by workers, and per-domain concurrency
slots whose leases run out when a worker dies."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from mlm.mail.throttle import (
    ConcurrencyLimiter,
    Throttle,
    acquire,
    backend_key,
    domain_key,
    throttle,
    unit_key,
)


@pytest.fixture
def client():
    assert settings.REDIS_URL, "the throttle tests need Redis"
    connection = redis.Redis.from_url(settings.REDIS_URL)
    yield connection
    connection.close()


class Clock:
    """A clock the test moves by hand, in place of Redis's: no real waiting. The tests use rates
    whose waits are exact in binary (1/8 s), so that no step is lost to rounding."""

    def __init__(self) -> None:
        self.now = 1000.0  # small: Redis keeps the time to 14 digits

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key(client):
    """A fresh key per test, removed afterwards (the database is shared with other tests)."""
    name = f"mlm:throttle:test:{uuid.uuid4().hex}"
    yield name
    client.delete(name, f"{name}:2")


def test_it_grants_the_burst_then_says_how_long_to_wait(client, key, clock):
    bucket = Throttle(client, clock=clock)
    assert [bucket.acquire(key, rate=8, burst=5) for _ in range(5)] == [0.0] * 5
    wait = bucket.acquire(key, rate=8, burst=5)
    assert wait == 0.125
    clock.advance(0.0625)
    assert bucket.acquire(key, rate=8, burst=5) == 0.0625
    clock.advance(0.0625)
    assert bucket.acquire(key, rate=8, burst=5) == 0.0


def test_it_refills_at_the_rate_and_never_beyond_the_burst(client, key, clock):
    bucket = Throttle(client, clock=clock)
    assert bucket.acquire(key, 5, rate=20, burst=5) == 0.0
    clock.advance(0.125)  # 2.5 tokens at 20 a second
    assert bucket.acquire(key, 3, rate=20, burst=5) > 0
    assert bucket.acquire(key, 2, rate=20, burst=5) == 0.0
    clock.advance(2)  # long enough for 40, but the bucket holds 5
    assert bucket.acquire(key, 5, rate=20, burst=5) == 0.0
    assert bucket.acquire(key, 1, rate=20, burst=5) > 0


def test_waiting_takes_nothing(client, key, clock):
    bucket = Throttle(client, clock=clock)
    bucket.acquire(key, 5, rate=1, burst=5)
    first = bucket.acquire(key, 3, rate=1, burst=5)
    second = bucket.acquire(key, 3, rate=1, burst=5)
    assert first == second == pytest.approx(3.0)  # the first answer took no tokens


def test_it_refuses_more_tokens_than_the_burst(client, key):
    with pytest.raises(ValueError, match="never be taken"):
        Throttle(client).acquire(key, 6, rate=10, burst=5)
    with pytest.raises(ValueError, match="positive"):
        Throttle(client).acquire(key, 1, rate=0, burst=5)


def test_it_takes_from_every_bucket_or_from_none(client, key):
    bucket = Throttle(client)
    unit, backend = (key, 100, 10), (f"{key}:2", 1, 2)
    assert bucket.acquire_all([unit, backend], 2) == 0.0
    # The backend's bucket is empty: nothing is taken from the unit's either.
    for _ in range(3):
        assert bucket.acquire_all([unit, backend], 2) > 1
    assert bucket.acquire(key, 8, rate=100, burst=10) == 0.0


def test_the_rate_holds_across_workers(client, key):
    """Four workers with their own connections share one bucket: the total granted in a second
    is the burst plus the rate, however they race."""
    rate, burst, duration = 50, 10, 1.0
    granted = [0] * 4

    def worker(i: int) -> None:
        own = Throttle(redis.Redis.from_url(settings.REDIS_URL))
        end = time.monotonic() + duration
        while time.monotonic() < end:
            wait = own.acquire(key, rate=rate, burst=burst)
            if wait == 0:
                granted[i] += 1
            else:
                time.sleep(min(wait, max(0.0, end - time.monotonic())))
        own.client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(granted)
    assert total <= burst + rate * elapsed + 1
    assert total >= (burst + rate * duration) * 0.7
    assert all(granted)  # everybody got some


def test_take_waits_for_the_tokens(client, key, clock):
    bucket = Throttle(client, clock=clock)
    bucket.acquire(key, 2, rate=16, burst=2)
    started = clock.now
    waited = bucket.take([(key, 16, 2)], 2, sleep=clock.advance)
    assert waited == 0.125 == clock.now - started
    with pytest.raises(TimeoutError):
        bucket.take([(key, 16, 2)], 2, timeout=0.01, sleep=clock.advance)
    assert clock.now - started == waited  # a wait past the timeout is not slept


def test_an_idle_bucket_expires(client, key):
    Throttle(client).acquire(key, rate=10, burst=5)
    assert 0 < client.pttl(key) <= 1500


def test_the_module_helpers_use_the_shared_redis_throttle(client):
    assert isinstance(throttle(), Throttle)
    name = unit_key(10**9 + int(uuid.uuid4().int % 10**6))
    try:
        assert acquire(name, rate=1, burst=1) == 0.0
        assert acquire(name, rate=1, burst=1) > 0.9
    finally:
        client.delete(name)
    assert backend_key("smtp:relay.example.edu") == "mlm:throttle:backend:smtp:relay.example.edu"
    assert domain_key(" Gmail.COM ") == "mlm:throttle:domain:gmail.com"


def test_it_limits_concurrent_slots_per_domain(client, key):
    limiter = ConcurrencyLimiter(client)
    first = limiter.acquire(key, limit=2, lease_seconds=30)
    second = limiter.acquire(key, limit=2, lease_seconds=30)
    assert first and second and first != second
    assert limiter.acquire(key, limit=2, lease_seconds=30) is None
    assert limiter.holders(key) == 2
    assert limiter.release(key, first)
    assert not limiter.release(key, first)
    assert limiter.acquire(key, limit=2, lease_seconds=30) is not None


def test_a_dead_workers_slot_frees_itself_when_its_lease_runs_out(client, key, clock):
    limiter = ConcurrencyLimiter(client, clock=clock)
    dead = limiter.acquire(key, limit=1, lease_seconds=2)  # its worker is killed: no release
    assert dead
    assert limiter.acquire(key, limit=1, lease_seconds=2) is None
    clock.advance(2.001)
    assert limiter.holders(key) == 0
    alive = limiter.acquire(key, limit=1, lease_seconds=5)
    assert alive
    assert not limiter.renew(key, dead, lease_seconds=5)  # the late worker learns it lost it
    assert limiter.renew(key, alive, lease_seconds=5)
    assert 0 < client.pttl(key) <= 5000


def test_a_renewed_lease_outlives_its_first_term(client, key, clock):
    limiter = ConcurrencyLimiter(client, clock=clock)
    lease = limiter.acquire(key, limit=1, lease_seconds=3)
    clock.advance(2)
    assert limiter.renew(key, lease, lease_seconds=5)
    clock.advance(2)
    assert limiter.holders(key) == 1
    assert limiter.acquire(key, limit=1, lease_seconds=1) is None


def test_slots_are_released_on_error_and_never_exceed_the_limit(client, key):
    limiter = ConcurrencyLimiter(client)
    with pytest.raises(RuntimeError), limiter.slot(key, limit=1, lease_seconds=5):
        raise RuntimeError("send failed")
    assert limiter.holders(key) == 0

    inside, peak, lock = 0, 0, threading.Lock()

    def worker() -> None:
        nonlocal inside, peak
        own = ConcurrencyLimiter(redis.Redis.from_url(settings.REDIS_URL))
        for _ in range(5):
            with own.slot(key, limit=2, lease_seconds=5, timeout=10, poll=0.005):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.01)
                with lock:
                    inside -= 1
        own.client.close()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2
    with (
        limiter.slot(key, limit=1, lease_seconds=5),
        pytest.raises(TimeoutError),
        limiter.slot(key, limit=1, lease_seconds=5, timeout=0.1),
    ):
        pass
