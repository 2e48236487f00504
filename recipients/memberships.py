"""List membership in bulk by address: up to a thousand addresses in a few SQL statements, with
one answer per address (added, already on the list, not a recipient, invalid, other audience).

Separate audiences (I3): an address of the other audience is refused with its reason, and the
rest of the request still takes effect; every answer says what happened to its address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef

from mlm.services import audit_record
from recipients.addresses import AddressHasher, InvalidAddress, normalise_address
from recipients.models import ListMembership, Recipient, RecipientList, RecipientStatus
from recipients.services import audience_problem


class Outcome(models.TextChoices):
    ADDED = "added", "Added to the list"
    ALREADY = "already", "Already on the list"
    REMOVED = "removed", "Taken off the list"
    NOT_MEMBER = "not_member", "Not on the list"
    NOT_RECIPIENT = "not_recipient", "Not a recipient of the unit"
    INVALID = "invalid_address", "Not a valid address"
    AUDIENCE_MISMATCH = "audience_mismatch", "Of the other audience"


@dataclass(frozen=True)
class MembershipResult:
    """What a bulk call did with one address, as the caller wrote it."""

    address: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class _Found:
    pk: int
    email: str
    category: str
    on_list: bool


# What one request may name: large enough for a form's day, small enough for one statement.
MOST_ADDRESSES = 1000


def _check_size(addresses: Sequence[str]) -> None:
    most = MOST_ADDRESSES
    if not addresses:
        raise ValidationError("Give at least one address.")
    if len(addresses) > most:
        raise ValidationError(
            f"{len(addresses):,} addresses were given; one request takes at most {most:,}. "
            "Split them into several requests."
        )


def _look_up(
    recipient_list: RecipientList, addresses: Sequence[str]
) -> tuple[dict[int, str], dict[int, str], dict[str, _Found]]:
    """Normalise and hash every address (no SQL), then find the unit's recipients among them
    with whether each is on the list, in one query."""
    hasher = AddressHasher()
    invalid: dict[int, str] = {}
    hashes: dict[int, str] = {}
    for index, raw in enumerate(addresses):
        try:
            hashes[index] = hasher(normalise_address(raw if isinstance(raw, str) else ""))
        except InvalidAddress as error:
            invalid[index] = str(error)
    rows = (
        Recipient.objects.for_unit(recipient_list.unit)
        .filter(email_hash__in=set(hashes.values()))
        .exclude(status=RecipientStatus.ERASED)
        .annotate(
            on_list=Exists(
                ListMembership.objects.filter(
                    recipient_list=recipient_list, recipient=OuterRef("pk")
                )
            )
        )
        .values_list("pk", "email_hash", "email", "category", "on_list")
        .order_by()
    )
    found = {digest: _Found(pk, email, category, on) for pk, digest, email, category, on in rows}
    return invalid, hashes, found


def _insert(recipient_list: RecipientList, recipient_ids: list[int]) -> set[int]:
    """Add memberships in one statement; returns the recipients it really added (a concurrent
    request may have added some first: they are then already on the list).

    The recipients are locked FOR KEY SHARE and their status tested again under the lock: an
    erasure running meanwhile (it locks the recipient FOR UPDATE, then empties its lists) is
    waited for, and its recipient is left out (I9)."""
    if not recipient_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO recipients_listmembership (recipient_list_id, recipient_id, added_at) "
            "SELECT %s, r.id, now() FROM recipients_recipient r "
            "WHERE r.id = ANY(%s::bigint[]) AND r.unit_id = %s AND r.status <> %s "
            "FOR KEY SHARE OF r "
            "ON CONFLICT DO NOTHING RETURNING recipient_id",
            [recipient_list.pk, recipient_ids, recipient_list.unit_id, RecipientStatus.ERASED],
        )
        return {row[0] for row in cursor.fetchall()}


def _delete(recipient_list: RecipientList, recipient_ids: list[int]) -> set[int]:
    """Take memberships off in one statement; returns the recipients it really took off."""
    if not recipient_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM recipients_listmembership WHERE recipient_list_id = %s "
            "AND recipient_id = ANY(%s::bigint[]) RETURNING recipient_id",
            [recipient_list.pk, recipient_ids],
        )
        return {row[0] for row in cursor.fetchall()}


@transaction.atomic
def list_members_add(
    *,
    recipient_list: RecipientList,
    addresses: Sequence[str],
    by: AbstractBaseUser | None,
) -> list[MembershipResult]:
    """Put the unit's recipients with these addresses on the list, refusing each one of the
    other audience with its reason (I3); one result per address, in the order given."""
    _check_size(addresses)
    invalid, hashes, found = _look_up(recipient_list, addresses)
    wanted: dict[int, None] = {}
    for digest in set(hashes.values()):
        recipient = found.get(digest)
        if recipient is not None and not recipient.on_list:
            problem = audience_problem(
                email=recipient.email,
                category=recipient.category,
                audience=recipient_list.audience,
            )
            if problem is None:
                wanted[recipient.pk] = None
    added = _insert(recipient_list, list(wanted))
    gone: set[int] = set()
    if len(added) < len(wanted):
        # Rare: another request added some first, or an erasure took some away meanwhile.
        missing = [pk for pk in wanted if pk not in added]
        on_list = ListMembership.objects.filter(
            recipient_list=recipient_list, recipient__in=missing
        )
        gone = set(missing) - set(on_list.values_list("recipient_id", flat=True))
    results = []
    told: set[int] = set()
    for index, raw in enumerate(addresses):
        if index in invalid:
            results.append(MembershipResult(raw, Outcome.INVALID, invalid[index]))
            continue
        recipient = found.get(hashes[index])
        if recipient is None or recipient.pk in gone:
            results.append(
                MembershipResult(
                    raw,
                    Outcome.NOT_RECIPIENT,
                    "No recipient of the unit has this address: create the recipient first.",
                )
            )
        elif recipient.pk in added and recipient.pk not in told:
            told.add(recipient.pk)
            results.append(MembershipResult(raw, Outcome.ADDED, "Added to the list."))
        elif recipient.pk in wanted or recipient.on_list or recipient.pk in told:
            results.append(MembershipResult(raw, Outcome.ALREADY, "Already on the list."))
        else:
            problem = audience_problem(
                email=recipient.email,
                category=recipient.category,
                audience=recipient_list.audience,
            )
            results.append(MembershipResult(raw, Outcome.AUDIENCE_MISMATCH, problem or ""))
    if added:
        audit_record(
            unit=recipient_list.unit,
            actor=by,
            verb="list.add_members",
            obj=recipient_list,
            data={"added": len(added)},
        )
    return results


@transaction.atomic
def list_members_remove(
    *,
    recipient_list: RecipientList,
    addresses: Sequence[str],
    by: AbstractBaseUser | None,
) -> list[MembershipResult]:
    """Take the unit's recipients with these addresses off the list; consent history is
    untouched. One result per address, in the order given."""
    _check_size(addresses)
    invalid, hashes, found = _look_up(recipient_list, addresses)
    removed = _delete(recipient_list, [r.pk for r in found.values() if r.on_list])
    results = []
    told: set[int] = set()
    for index, raw in enumerate(addresses):
        if index in invalid:
            results.append(MembershipResult(raw, Outcome.INVALID, invalid[index]))
            continue
        recipient = found.get(hashes[index])
        if recipient is None:
            results.append(
                MembershipResult(
                    raw, Outcome.NOT_RECIPIENT, "No recipient of the unit has this address."
                )
            )
        elif recipient.pk in removed and recipient.pk not in told:
            told.add(recipient.pk)
            results.append(MembershipResult(raw, Outcome.REMOVED, "Taken off the list."))
        else:
            results.append(MembershipResult(raw, Outcome.NOT_MEMBER, "Not on the list."))
    if removed:
        audit_record(
            unit=recipient_list.unit,
            actor=by,
            verb="list.remove_members",
            obj=recipient_list,
            data={"removed": len(removed)},
        )
    return results
