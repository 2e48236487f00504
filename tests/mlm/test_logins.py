"""Failed logins lock an account, or a client address, out for a while: on the staff login and
in Django admin, with a clear message and an audit entry."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings

from mlm.logins import PREFIX, locked_for
from mlm.models import AuditEntry
from tests.personas import PASSWORD

WRONG = "not the password"


@pytest.fixture(autouse=True)
def _no_counters_left():
    """Each test starts and ends without login counters (they live in the shared Redis)."""
    client = redis.Redis.from_url(settings.REDIS_URL)

    def forget():
        keys = list(client.scan_iter(f"{PREFIX}*"))
        if keys:
            client.delete(*keys)

    forget()
    yield client
    forget()


def login(client, path: str, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_ten_wrong_passwords_then_the_right_one_is_refused(client, world, path):
    world.alice.is_staff = True
    world.alice.save(update_fields=["is_staff"])
    for _ in range(10):
        assert login(client, path, "alice", WRONG).status_code == 200
        assert not logged_in(client)
    answer = login(client, path, "alice", PASSWORD)
    assert answer.status_code == 200 and not logged_in(client)
    assert "Too many failed logins for this account or from this address" in answer.text
    assert "Try again in 15 minutes" in answer.text
    entry = AuditEntry.objects.get(verb="login.locked")
    assert entry.actor == world.alice and entry.data == {"by": "account"}


def test_the_lockout_expires(client, world, _no_counters_left):
    for _ in range(10):
        login(client, "/accounts/login/", "alice", WRONG)
    assert locked_for(None, "alice") is not None
    # The window is Redis's clock: end it now rather than wait fifteen minutes.
    for key in _no_counters_left.scan_iter(f"{PREFIX}*"):
        _no_counters_left.pexpire(key, 20)
    deadline = time.monotonic() + 5
    while locked_for(None, "alice") is not None:
        assert time.monotonic() < deadline, "the lockout did not expire"
    assert login(client, "/accounts/login/", "alice", PASSWORD).status_code == 302
    assert logged_in(client)


def test_a_success_forgets_the_accounts_failures(client, world):
    for _ in range(9):
        login(client, "/accounts/login/", "bob", WRONG)
    assert login(client, "/accounts/login/", "bob", PASSWORD).status_code == 302
    client.logout()
    for _ in range(9):
        login(client, "/accounts/login/", "bob", WRONG)
    assert login(client, "/accounts/login/", "bob", PASSWORD).status_code == 302


def test_one_address_trying_many_accounts_is_locked_out(client, world):
    for i in range(50):
        login(client, "/accounts/login/", f"guess{i}", WRONG, address="198.51.100.9")
    refused = login(client, "/accounts/login/", "alice", PASSWORD, address="198.51.100.9")
    assert not logged_in(client)
    assert "Too many failed logins" in refused.text
    assert AuditEntry.objects.get(verb="login.locked").data == {"by": "client address"}
    # Another address is not held back by it.
    assert (
        login(client, "/accounts/login/", "alice", PASSWORD, address="192.0.2.1").status_code == 302
    )


def test_redis_holds_no_user_name_and_no_address(client, world, _no_counters_left):
    login(client, "/accounts/login/", "alice", WRONG, address="198.51.100.77")
    keys = [k.decode() for k in _no_counters_left.scan_iter(f"{PREFIX}*")]
    assert len(keys) == 2
    assert not [k for k in keys if "alice" in k or "198.51" in k]
