"""Recipients and lists: creating, and list membership with separate audiences (I3). Export
and erasure (I9) are in recipients.rights."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from consent.models import Suppression, SuppressionReason
from consent.services import carry_case_sensitive_suppressions
from mlm.db import row_exists
from mlm.models import SenderUnit
from mlm.services import audit_record
from recipients.addresses import address_hash, is_internal_address, normalise_address
from recipients.models import (
    Audience,
    Category,
    ListMembership,
    Recipient,
    RecipientList,
    RecipientStatus,
)


class AudienceMismatch(ValidationError):
    """I3: an address or recipient of one audience offered to a list of the other."""


class ErasedAddress(ValidationError):
    """I9: the address belongs to a person whose data was erased; it is not taken back in."""


FIELD_LIMITS = {"first_name": 150, "last_name": 150, "locale": 10}


def audience_problem(*, email: str, category: str, audience: str) -> str | None:
    """Why a recipient cannot join a list of `audience`, or None if it can (I3)."""
    if audience == Audience.EXTERNAL:
        if Category(category).audience == Audience.INTERNAL:
            return (
                f"{email} is {Category(category).label.lower()} (an internal recipient) and "
                "cannot be added to an external list."
            )
        if is_internal_address(email):
            return (
                f"{email} is an address of the institution's own domains and cannot be added "
                "to an external list."
            )
    elif Category(category).audience == Audience.EXTERNAL:
        return f"{email} is an external recipient and cannot be added to an internal list."
    return None


def _checked(*, email: str, category: str, fields: dict[str, str]) -> tuple[str, str]:
    """The normalised address and its hash, if a recipient of `category` may have them and
    `fields` fit their columns; else ValidationError (I3, I9)."""
    normalised = normalise_address(email)
    if category not in Category.values:
        raise ValidationError(
            f"Unknown category {category!r}: use one of {', '.join(Category.values)}."
        )
    if category == Category.EXTERNAL and is_internal_address(normalised):
        raise AudienceMismatch(
            f"{normalised} is an address of the institution's own domains; its category must be "
            "staff, student or alumni, not external."
        )
    for name, limit in FIELD_LIMITS.items():
        if len(fields[name]) > limit:
            raise ValidationError(f"{name.replace('_', ' ')} is longer than {limit} characters.")
    carry_case_sensitive_suppressions([normalised])
    digest = address_hash(normalised)
    if row_exists(
        Suppression,
        "unit_id IS NULL AND email_hash = %s AND reason = %s",
        [digest, SuppressionReason.ERASURE.value],
    ):
        raise ErasedAddress(
            f"{normalised} belongs to a person whose data was erased at their request; it is "
            "kept out of every unit and cannot be added again."
        )
    return normalised, digest


def _create(
    *,
    unit: SenderUnit,
    normalised: str,
    digest: str,
    category: str,
    fields: dict[str, str],
    attributes: dict[str, Any] | None,
    by: AbstractBaseUser | None,
) -> Recipient:
    recipient = Recipient.objects.create(
        unit=unit,
        email=normalised,
        email_hash=digest,
        category=category,
        attributes=attributes or {},
        **fields,
    )
    audit_record(unit=unit, actor=by, verb="recipient.create", obj=recipient)
    return recipient


@transaction.atomic
def recipient_upsert(
    *,
    unit: SenderUnit,
    email: str,
    category: str,
    first_name: str = "",
    last_name: str = "",
    locale: str = "",
    attributes: dict[str, Any] | None = None,
    by: AbstractBaseUser | None,
) -> tuple[Recipient, bool]:
    """Create a recipient of `unit` or update its profile; grants nothing (I2)."""
    fields = {"first_name": first_name, "last_name": last_name, "locale": locale}
    normalised, digest = _checked(email=email, category=category, fields=fields)
    recipient = Recipient.objects.filter(unit=unit, email_hash=digest).first()
    if recipient is None:
        recipient = _create(
            unit=unit, normalised=normalised, digest=digest, category=category, fields=fields,
            attributes=attributes, by=by,
        )  # fmt: skip
        return recipient, True
    if Category(category).audience != recipient.audience:
        # I3: a category change must not leave the recipient on a list of the old audience.
        for list_audience, list_name in recipient.list_memberships.values_list(
            "recipient_list__audience", "recipient_list__name"
        ):
            if audience_problem(email=normalised, category=category, audience=list_audience):
                raise AudienceMismatch(
                    f"{normalised} is on the {list_audience} list “{list_name}”, so its "
                    f"category cannot become {Category(category).label.lower()}."
                )
    for name, value in fields.items():
        setattr(recipient, name, value)
    recipient.category = category
    if attributes is not None:
        recipient.attributes = attributes
    recipient.save()
    return recipient, False


# No savepoint: when it fails, the caller's whole transaction fails with it (nothing of a
# recipient half made can be kept), and one consent write through the API saves the round trip.
@transaction.atomic(savepoint=False)
def recipient_create(
    *, unit: SenderUnit, email: str, category: str, by: AbstractBaseUser | None
) -> Recipient:
    """Create a recipient of `unit`, which has no recipient of this address (the caller looked
    it up); grants nothing (I2)."""
    fields = {"first_name": "", "last_name": "", "locale": ""}
    normalised, digest = _checked(email=email, category=category, fields=fields)
    return _create(
        unit=unit, normalised=normalised, digest=digest, category=category, fields=fields,
        attributes=None, by=by,
    )  # fmt: skip


@transaction.atomic
def list_create(
    *,
    unit: SenderUnit,
    name: str,
    audience: str,
    description: str = "",
    by: AbstractBaseUser | None,
) -> RecipientList:
    """Create a list of one audience."""
    if audience not in Audience.values:
        raise ValidationError("A list is either internal or external.")
    if RecipientList.objects.for_unit(unit).filter(name=name).exists():
        raise ValidationError(f"This unit already has a list named {name!r}.")
    recipient_list = RecipientList.objects.create(
        unit=unit, name=name, audience=audience, description=description
    )
    audit_record(
        unit=unit, actor=by, verb="list.create", obj=recipient_list, data={"audience": audience}
    )
    return recipient_list


@transaction.atomic
def list_add_members(
    *,
    recipient_list: RecipientList,
    recipients: Iterable[Recipient],
    by: AbstractBaseUser | None,
) -> int:
    """Add recipients to a list; refuses the whole batch if any is of the other audience (I3).

    Returns how many were newly added.
    """
    recipients = list(recipients)
    for recipient in recipients:
        if recipient.unit_id != recipient_list.unit_id:
            raise ValidationError(f"{recipient.email} belongs to another unit.")
        if recipient.status == RecipientStatus.ERASED:
            raise ValidationError("An erased recipient cannot be added to a list.")
        problem = audience_problem(
            email=recipient.email, category=recipient.category, audience=recipient_list.audience
        )
        if problem:
            raise AudienceMismatch(problem)
    existing = set(
        ListMembership.objects.filter(
            recipient_list=recipient_list, recipient__in=recipients
        ).values_list("recipient_id", flat=True)
    )
    new = [
        ListMembership(recipient_list=recipient_list, recipient=r)
        for r in {r.pk: r for r in recipients}.values()
        if r.pk not in existing
    ]
    ListMembership.objects.bulk_create(new, ignore_conflicts=True)
    if new:
        audit_record(
            unit=recipient_list.unit,
            actor=by,
            verb="list.add_members",
            obj=recipient_list,
            data={"added": len(new)},
        )
    return len(new)


@transaction.atomic
def list_remove_member(
    *, recipient_list: RecipientList, recipient: Recipient, by: AbstractBaseUser | None
) -> bool:
    """Take a recipient off a list; consent history is untouched."""
    deleted, _ = ListMembership.objects.filter(
        recipient_list=recipient_list, recipient=recipient
    ).delete()
    if deleted:
        audit_record(
            unit=recipient_list.unit,
            actor=by,
            verb="list.remove_member",
            obj=recipient_list,
            data={"recipient": str(recipient.code)},
        )
    return bool(deleted)


@transaction.atomic
def list_add_recipient(
    *,
    recipient_list: RecipientList,
    email: str,
    category: str,
    first_name: str = "",
    last_name: str = "",
    by: AbstractBaseUser | None,
) -> tuple[Recipient, bool]:
    """Create or update one recipient and put it on the list, all or nothing (I3).

    Blank names keep the names already held. A category change that would leave the recipient
    on a list of the other audience is refused. Returns the recipient and whether it is new.
    """
    existing = Recipient.objects.filter(
        unit=recipient_list.unit, email_hash=address_hash(normalise_address(email))
    ).first()
    recipient, created = recipient_upsert(
        unit=recipient_list.unit,
        email=email,
        category=category,
        first_name=first_name or (existing.first_name if existing else ""),
        last_name=last_name or (existing.last_name if existing else ""),
        locale=existing.locale if existing else "",
        by=by,
    )
    list_add_members(recipient_list=recipient_list, recipients=[recipient], by=by)
    return recipient, created
