"""Two-factor authentication for staff: set up with an authenticator app, asked for at every
login once set up (the staff login and Django admin), and required of the roles that
MLM_REQUIRE_2FA_FOR names."""

from __future__ import annotations

import re

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from mlm.models import AuditEntry
from tests.personas import PASSWORD


def code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """What the person's authenticator app shows now (or a later step's code)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def set_up(client, user) -> TOTPDevice:
    client.force_login(user)
    page = client.get("/accounts/two-factor/")
    assert page.status_code == 200 and "<svg" in page.text
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    key = re.search(r"<code>([A-Z2-7]+)</code>", page.text).group(1)
    assert len(key) >= 32  # the key, for typing it in by hand
    answer = client.post("/accounts/two-factor/", {"otp_token": code(device)})
    assert answer.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    client.logout()
    return device


def log_in(client, path: str, username: str, token: str = "", address: str = "203.0.113.50"):
    data = {"username": username, "password": PASSWORD, "otp_token": token}
    return client.post(path, data, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture(autouse=True)
def _no_login_counters():
    import redis
    from django.conf import settings

    from mlm.logins import PREFIX

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield
    if keys := list(client.scan_iter(f"{PREFIX}*")):
        client.delete(*keys)


def test_it_sets_up_an_authenticator_app_and_audits_it(client, world):
    set_up(client, world.bob)
    assert AuditEntry.objects.filter(verb="two_factor.set_up", actor=world.bob).count() == 1


def test_a_wrong_code_does_not_set_it_up(client, world):
    client.force_login(world.bob)
    client.get("/accounts/two-factor/")
    answer = client.post("/accounts/two-factor/", {"otp_token": "000000"})
    assert answer.status_code == 200 and "not right" in answer.text
    assert not TOTPDevice.objects.filter(user=world.bob, confirmed=True).exists()


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_once_set_up_every_login_asks_for_the_code(client, world, path, settings):
    world.bob.is_staff = True
    world.bob.save(update_fields=["is_staff"])
    device = set_up(client, world.bob)
    without = log_in(client, path, "bob")
    assert not logged_in(client) and "Enter the code from your authenticator app" in without.text
    wrong = log_in(client, path, "bob", "123456" if code(device) != "123456" else "654321")
    assert not logged_in(client) and "not right" in wrong.text
    # django-otp makes the next try wait after a wrong code (1 s, doubling): as if waited.
    device.refresh_from_db()
    device.throttle_reset()
    # A code is good once: the one that set the app up cannot log in; the next step's can.
    assert not logged_in(client)
    right = log_in(client, path, "bob", code(device, steps_ahead=1))
    assert right.status_code == 302 and logged_in(client)
    # The session is verified: pages that require the second factor open.
    settings.MLM_REQUIRE_2FA_FOR = ["editor", "staff"]
    assert client.get("/units/engineering/").status_code == 200
    assert client.get("/admin/").status_code == 200


def test_without_a_device_the_code_is_not_asked(client, world):
    assert log_in(client, "/accounts/login/", "bob").status_code == 302


def test_a_role_that_requires_it_is_sent_to_set_it_up(client, world, settings):
    settings.MLM_REQUIRE_2FA_FOR = ["admin", "approver"]
    client.force_login(world.alice)  # admin of the unit
    answer = client.get("/units/engineering/campaigns/")
    assert answer.status_code == 302
    assert answer.url.startswith("/accounts/two-factor/?next=/units/engineering/campaigns/")
    page = client.get(answer.url)
    assert "Your role needs two-factor authentication" in page.text
    device = TOTPDevice.objects.get(user=world.alice)
    done = client.post(answer.url, {"otp_token": code(device)})
    assert done.status_code == 302 and done.url == "/units/engineering/campaigns/"
    assert client.get("/units/engineering/campaigns/").status_code == 200
    # An editor is not asked.
    client.force_login(world.bob)
    assert client.get("/units/engineering/campaigns/").status_code == 200


def test_staff_it_requires_reach_admin_only_verified(client, world, settings):
    settings.MLM_REQUIRE_2FA_FOR = ["staff"]
    world.alice.is_staff = world.alice.is_superuser = True
    world.alice.save(update_fields=["is_staff", "is_superuser"])
    client.force_login(world.alice)
    assert client.get("/admin/").status_code == 302
    device = set_up(client, world.alice)
    device.refresh_from_db()
    assert log_in(client, "/admin/login/", "alice", code(device, steps_ahead=1)).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_next_address_elsewhere_is_not_followed(client, world):
    client.force_login(world.bob)
    client.get("/accounts/two-factor/")
    device = TOTPDevice.objects.get(user=world.bob)
    answer = client.post(
        "/accounts/two-factor/?next=https://evil.example.com/", {"otp_token": code(device)}
    )
    assert answer.status_code == 302 and answer.url == "/"
