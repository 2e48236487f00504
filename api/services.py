"""API keys: create (the secret shown once), revoke, and find the key of a request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from api.models import ApiKey, ApiRole
from mlm.models import SenderUnit
from mlm.services import audit_record

KEY_START = "mlm_"
# last_used_at is written at most this often per key: a busy key would otherwise cost one
# UPDATE per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    unit: SenderUnit,
    name: str,
    role: ApiRole,
    expires_at: datetime | None,
    by: AbstractBaseUser | None,
) -> tuple[ApiKey, str]:
    """Make a key of `unit` and return it with its secret, which is kept only as a hash."""
    if not name.strip():
        raise ValidationError("Name the key after the system that will use it.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry must be in the future.")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        unit=unit,
        name=name.strip(),
        role=ApiRole(role),
        prefix=prefix,
        secret_hash=_hash(secret),
        created_by=by,
        expires_at=expires_at,
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="api_key.create",
        obj=key,
        data={"prefix": prefix, "role": str(role)},
    )
    return key, secret


def api_key_revoke(*, key: ApiKey, by: AbstractBaseUser | None) -> bool:
    """Revoke a key at once; False if it was already revoked."""
    with transaction.atomic():
        count = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if count:
            audit_record(
                unit=key.unit, actor=by, verb="api_key.revoke", obj=key, data={"prefix": key.prefix}
            )
    return bool(count)


def api_key_for_secret(secret: str, *, now: datetime | None = None) -> ApiKey | None:
    """The active key whose secret this is (None: unknown, revoked or expired), its last use
    noted at most once per LAST_USED_RESOLUTION."""
    if not secret.startswith(KEY_START) or len(secret) > 200:
        return None
    now = now or timezone.now()
    key = (
        ApiKey.objects.select_related("unit")
        .filter(secret_hash=_hash(secret), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if key is None:
        return None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        # Conditional, so that concurrent requests of one key write it once.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key
