"""Reads of the public recipient pages: whom a token names, what the preference centre shows."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db import connection
from django.utils import timezone

from consent.models import DMType, SubscriptionRequest, Suppression, SuppressionReason
from consent.selectors import DMTypeState, recipient_dm_type_states
from consent.tokens import TokenData, read_recipient_token
from recipients.addresses import address_hash
from recipients.models import Recipient, RecipientStatus


@dataclass(frozen=True)
class PublicTarget:
    """The recipient a genuine token names, with the DM type of the mail it came from."""

    recipient: Recipient
    dm_type: DMType | None
    data: TokenData


def public_target(token: str) -> PublicTarget | None:
    """The recipient (and DM type) of a token; None for a token we did not sign, and for one
    whose recipient is gone or erased (I9) — the pages answer both alike."""
    data = read_recipient_token(token)
    if data is None:
        return None
    recipient = (
        Recipient.objects.select_related("unit")
        .filter(code=data.recipient_code)
        .exclude(status=RecipientStatus.ERASED)
        .first()
    )
    if recipient is None:
        return None
    dm_type = None
    if data.dm_type_code is not None:
        # Archived DM types still resolve: a withdrawal of one is always possible.
        dm_type = DMType.objects.for_unit(recipient.unit).filter(code=data.dm_type_code).first()
        if dm_type is None:
            return None
    return PublicTarget(recipient, dm_type, data)


# One round trip for the one-click path (300 requests/s on two cores): the recipient and the
# token's DM type of the same unit, without the ORM's query building.
_LEAN_LOOKUP = """
    SELECT r.id, r.code, r.unit_id, d.id
    FROM {recipient} r LEFT JOIN {dm_type} d ON d.code = %s AND d.unit_id = r.unit_id
    WHERE r.code = %s AND r.status <> %s
"""


def public_target_lean_for(data: TokenData) -> PublicTarget | None:
    """Like `public_target`, for acting only, from a token already read: instances carry their
    ids and codes, and load any other field from the database if it is ever read."""
    sql = _LEAN_LOOKUP.format(recipient=Recipient._meta.db_table, dm_type=DMType._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [data.dm_type_code, data.recipient_code, RecipientStatus.ERASED])
        row = cursor.fetchone()
    if row is None or (data.dm_type_code is not None and row[3] is None):
        return None
    recipient_id, code, unit_id, dm_type_id = row
    recipient = Recipient.from_db(
        "default", ["id", "code", "unit_id"], [recipient_id, code, unit_id]
    )
    dm_type = None
    if dm_type_id is not None:
        dm_type = DMType.from_db(
            "default", ["id", "code", "unit_id"], [dm_type_id, data.dm_type_code, unit_id]
        )
    return PublicTarget(recipient, dm_type, data)


def preference_states(recipient: Recipient) -> list[DMTypeState]:
    """What the preference centre lists: every non-archived DM type of the unit, with the
    recipient's current state (the same rule as `sendable`)."""
    return [s for s in recipient_dm_type_states(recipient) if not s.dm_type.is_archived]


def opted_out_everywhere(recipient: Recipient) -> bool:
    """True if the person asked us to stop all marketing from the institution."""
    return Suppression.objects.filter(
        unit__isnull=True, email_hash=recipient.email_hash, reason=SuppressionReason.OPT_OUT
    ).exists()


def confirmed_recipient(subscription_request: SubscriptionRequest) -> Recipient | None:
    """The recipient a confirmed double opt-in request made or found (not if since erased)."""
    return (
        Recipient.objects.for_unit(subscription_request.unit)
        .filter(email_hash=address_hash(subscription_request.email))
        .exclude(status=RecipientStatus.ERASED)
        .first()
    )


def subscription_request_pending(*, code: UUID) -> SubscriptionRequest | None:
    """The request a confirmation link names, if it can still be confirmed or already was."""
    return (
        SubscriptionRequest.objects.select_related("unit")
        .filter(code=code, expires_at__gt=timezone.now())
        .first()
    )
