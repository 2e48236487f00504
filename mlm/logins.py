"""Failed logins, counted in Redis per account and per client address: past the limit a login is
refused, before any password is checked, until the window ends.

The limits are MLM_RATE_LIMITS' `login_account` and `login_ip` (count/period). The
authentication backend enforces them for every login (the staff pages and Django admin); the
login forms check them first only to say how long to wait. Keys are hashes: Redis holds no user
name and no address.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import redis
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from mlm.ratelimit import client_ip, parse_rate
from mlm.services import audit_record
from mlm.two_factor import AsksForTheCode, CodeField

PREFIX = "mlm:login:"


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _keys(request: HttpRequest | None, username: str) -> dict[str, str]:
    """The counters a login attempt counts against: its account, and its client address."""
    keys = {}
    if username:
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys["login_account"] = f"{PREFIX}account:{digest}"
    if request is not None:
        digest = hashlib.sha256(client_ip(request).encode()).hexdigest()[:32]
        keys["login_ip"] = f"{PREFIX}ip:{digest}"
    return keys


def locked_for(request: HttpRequest | None, username: str) -> int | None:
    """Seconds until this account or address may try again, or None if it may now."""
    keys = _keys(request, username)
    if not keys:
        return None
    client = _redis(settings.REDIS_URL)
    with client.pipeline(transaction=False) as pipe:
        for key in keys.values():
            pipe.get(key)
            pipe.ttl(key)
        answers = pipe.execute()
    waits = []
    for i, limit in enumerate(keys):
        count, ttl = answers[2 * i], answers[2 * i + 1]
        allowed, period = parse_rate(settings.MLM_RATE_LIMITS[limit])
        if count is not None and int(count) >= allowed:
            waits.append(ttl if ttl and ttl > 0 else period)
    return max(waits) if waits else None


def record_failure(request: HttpRequest | None, username: str) -> None:
    """Count one failed login; the attempt that reaches a limit locks it, with an audit entry."""
    keys = _keys(request, username)
    client = _redis(settings.REDIS_URL)
    with client.pipeline(transaction=False) as pipe:
        for limit, key in keys.items():
            pipe.set(key, 0, ex=parse_rate(settings.MLM_RATE_LIMITS[limit])[1], nx=True)
            pipe.incr(key)
        answers = pipe.execute()
    for i, limit in enumerate(keys):
        if answers[2 * i + 1] == parse_rate(settings.MLM_RATE_LIMITS[limit])[0]:
            user = get_user_model().objects.filter(username=username).first() if username else None
            audit_record(
                unit=None,
                actor=user,
                verb="login.locked",
                data={"by": "account" if limit == "login_account" else "client address"},
            )


def clear_account(username: str) -> None:
    """A successful login forgets the account's failures (not its address's)."""
    if keys := _keys(None, username):
        _redis(settings.REDIS_URL).delete(*keys.values())


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        f"Too many failed logins for this account or from this address. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator."
    )


class ThrottledModelBackend(ModelBackend):
    """Django's user and password backend, which refuses any login while its account or
    address is locked out: no password is tried then (Django stops at PermissionDenied)."""

    def authenticate(self, request: HttpRequest | None, username=None, password=None, **kwargs):
        if password is None:
            return None  # not a password login (single sign-on has its own backends)
        if locked_for(request, username or kwargs.get("username") or "") is not None:
            raise PermissionDenied("locked out")
        return super().authenticate(request, username=username, password=password, **kwargs)

    def user_can_authenticate(self, user) -> bool:
        """With MLM_LOCAL_LOGIN_STAFF_ONLY, a password logs in only staff and superusers (the
        break-glass accounts); a session opened with one ends when that changes."""
        if settings.MLM_LOCAL_LOGIN_STAFF_ONLY and not (user.is_staff or user.is_superuser):
            return False
        return super().user_can_authenticate(user)


@receiver(user_login_failed)
def _count_failure(sender, credentials: dict, request: HttpRequest | None = None, **kwargs):
    record_failure(request, credentials.get("username") or "")


@receiver(user_logged_in)
def _forget_failures(sender, request: HttpRequest | None, user, **kwargs):
    clear_account(user.get_username())


class _SaysHowLongToWait:
    """A login form that names the lockout instead of "wrong password"."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        seconds = locked_for(self.request, username)
        if seconds is not None:
            raise forms.ValidationError(lockout_message(seconds), code="locked")
        return super().clean()


class LoginForm(_SaysHowLongToWait, AsksForTheCode, AuthenticationForm):
    """The staff login form: lockout, password, and the second factor of those who have one."""

    otp_token = CodeField()

    def get_invalid_login_error(self) -> forms.ValidationError:
        if settings.MLM_LOCAL_LOGIN_STAFF_ONLY:
            # Says where to go, without telling whether the password was right.
            return forms.ValidationError(
                "That user name and password do not log in here: passwords are kept for "
                "operations staff. Log in with single sign-on above.",
                code="invalid_login",
            )
        return super().get_invalid_login_error()


class AdminLoginForm(_SaysHowLongToWait, AsksForTheCode, AdminAuthenticationForm):
    """Django admin's login form, with the same lockout and second factor."""

    otp_token = CodeField()
