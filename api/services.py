"""API keys (create with the secret shown once, revoke, find the key of a request) and consent
recorded by other systems."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from api.models import ApiKey, ApiRole
from consent import services as consent_services
from consent.models import Action, Channel, ConsentEvent, DMType
from mlm.db import column_list, fetch_model, model_from_row, once_more_on_a_new_connection
from mlm.inserts import table
from mlm.models import SenderUnit
from mlm.services import acting_as, audit_record
from recipients.addresses import address_hash, is_internal_address
from recipients.models import Category, Recipient
from recipients.services import recipient_create

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
    key = _key_by_hash(_hash(secret))
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= now:
        return None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        # Conditional, so that concurrent requests of one key write it once.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


# The key and its unit by the unique index on the hash: what select_related("unit") reads,
# written once. The first query of every API request; the ORM's compiling of it cost more CPU
# than the database's answer (half the request's authentication).
# Table and column names come from the models; the hash is a parameter.
_KEY_BY_HASH = (
    f"SELECT {column_list(ApiKey, 'k')}, {column_list(SenderUnit, 'u')} "  # noqa: S608
    f"FROM {table(ApiKey)} k JOIN {table(SenderUnit)} u ON u.id = k.unit_id "
    "WHERE k.secret_hash = %s"
)


def _key_by_hash(secret_hash: str) -> ApiKey | None:
    """The key (and its unit) whose secret has this hash. It spares Django's health check (a
    SELECT 1 round trip each request): a connection that died since the last request fails
    this read, which runs once more on a new connection."""
    row = once_more_on_a_new_connection(
        lambda: _fetch_one(_KEY_BY_HASH, [secret_hash]), what="api key"
    )
    if row is None:
        return None
    split = len(ApiKey._meta.concrete_fields)
    key = model_from_row(ApiKey, row[:split])
    key.unit = model_from_row(SenderUnit, row[split:])
    return key


def _fetch_one(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


# Consent from other systems ---------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What another system says about how a person agreed or refused."""

    source_system: str
    timestamp: datetime
    form_text: str = ""
    form_url: str = ""
    ip_address: str | None = None
    user_agent: str = ""
    notice_version: int | None = None

    def text(self, key: ApiKey) -> str:
        """The evidence as the ledger keeps it."""
        parts = [
            f"Recorded through the API with key {key.prefix} ({key.name}) for "
            f"{self.source_system}.",
            f"The person acted at {self.timestamp.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC.",
        ]
        if self.notice_version is not None:
            parts.append(f"Shown notice version {self.notice_version}.")
        if self.form_url:
            parts.append(f"Form: {self.form_url}.")
        if self.form_text:
            parts.append(f"The form said: {self.form_text}")
        return " ".join(parts)


@dataclass(frozen=True)
class ConsentRecorded:
    recipient: Recipient
    created: bool
    events: list[ConsentEvent]


def key_label(key: ApiKey) -> str:
    """How the ledger and the audit log name what a key did."""
    return f"API key {key.prefix} ({key.name})"[:150]


def _consent_recipient(*, key: ApiKey, email: str, category: str | None) -> tuple[Recipient, bool]:
    """The unit's recipient of `email`, made if new, its row locked for the consent change; its
    category is never changed here (I3)."""
    recipient = fetch_model(
        Recipient, "unit_id = %s AND email_hash = %s", [key.unit_id, address_hash(email)], lock=True
    )
    if recipient is not None:
        if category and category != recipient.category:
            raise ValidationError(
                {
                    "category": f"This recipient's category is {recipient.category}, not "
                    f"{category}; change it through the recipients endpoint first."
                }
            )
        return recipient, False
    if not category:
        if is_internal_address(email):
            raise ValidationError(
                {
                    "category": "An address of the institution's own domains needs its category: "
                    "staff, student or alumni."
                }
            )
        category = Category.EXTERNAL
    with acting_as(key_label(key)):
        return recipient_create(unit=key.unit, email=email, category=category, by=None), True


@transaction.atomic
def consent_record(
    *,
    key: ApiKey,
    email: str,
    action: Action,
    dm_type_key: str | None,
    category: str | None,
    evidence: Evidence,
) -> ConsentRecorded:
    """A grant or withdrawal that another system collected, through the one consent writer: a
    grant needs its evidence and names one DM type and the notice version shown (I2); the
    audience comes from the address's category (I3); a withdrawal counts at once (I6)."""
    dm_type = None
    if dm_type_key is not None:
        dm_type = fetch_model(DMType, "unit_id = %s AND key = %s", [key.unit_id, dm_type_key])
        if dm_type is None:
            keys = ", ".join(DMType.objects.for_unit(key.unit).values_list("key", flat=True))
            raise ValidationError(
                {
                    "dm_type": f"This unit has no DM type {dm_type_key!r} "
                    f"(its keys: {keys or 'none'})."
                }
            )
    elif action == Action.GRANT:
        raise ValidationError({"dm_type": "A grant names one DM type; 'all' is never implied."})
    recipient, created = _consent_recipient(key=key, email=email, category=category)
    common = {
        "recipient": recipient,
        "channel": Channel.API,
        "evidence": evidence.text(key),
        "actor_label": key_label(key),
        "ip_address": evidence.ip_address,
        "user_agent": evidence.user_agent,
        "locked": True,
    }
    if action == Action.GRANT:
        events = consent_services.grant(
            dm_types=[dm_type], notice_version=evidence.notice_version, **common
        )
    else:
        events = consent_services.withdraw(
            dm_types=None if dm_type is None else [dm_type], **common
        )
    return ConsentRecorded(recipient=recipient, created=created, events=events)
