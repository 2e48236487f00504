"""Consent: DM types and their notices, grants and withdrawals (the ledger), suppressions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from consent.ledger import SCOPE_EVERYWHERE, SCOPE_UNIT, Who, record
from consent.models import (
    Action,
    Channel,
    ConsentEvent,
    DMType,
    DMTypeNotice,
    Suppression,
    SuppressionReason,
)
from mlm.db import fetch_model
from mlm.models import SenderUnit
from mlm.services import audit_record
from outbound.models import EventType
from outbound.services import recipient_events_emit
from recipients.addresses import (
    InvalidAddress,
    address_hash,
    address_key,
    case_sensitive_hash,
    normalise_address,
)
from recipients.models import Recipient, RecipientStatus


class ConsentError(ValidationError):
    """A consent change that the law of the system forbids; the message says which rule."""


# DM types ------------------------------------------------------------------------------------


@transaction.atomic
def dm_type_create(
    *,
    unit: SenderUnit,
    key: str,
    name: str,
    notice_text: str,
    internal_default: bool = False,
    name_zh_hant: str = "",
    name_zh_hans: str = "",
    notice_text_zh_hant: str = "",
    notice_text_zh_hans: str = "",
    by: AbstractBaseUser | None,
) -> DMType:
    """Create a DM type with the first version of its notice (Chinese versions optional)."""
    if not notice_text.strip():
        raise ValidationError("A DM type needs a notice that says what kind of marketing it is.")
    if DMType.objects.for_unit(unit).filter(key=key).exists():
        raise ValidationError(f"The key {key!r} is already used by another DM type of this unit.")
    dm_type = DMType(
        unit=unit,
        key=key,
        name=name,
        name_zh_hant=name_zh_hant.strip(),
        name_zh_hans=name_zh_hans.strip(),
        internal_default=internal_default,
    )
    dm_type.full_clean(validate_constraints=False)
    dm_type.save()
    DMTypeNotice.objects.create(
        dm_type=dm_type,
        version=1,
        text=notice_text.strip(),
        text_zh_hant=notice_text_zh_hant.strip(),
        text_zh_hans=notice_text_zh_hans.strip(),
        created_by=by,
    )
    audit_record(
        unit=unit, actor=by, verb="dm_type.create", obj=dm_type, data={"key": key, "notice": 1}
    )
    return dm_type


@transaction.atomic
def dm_type_update(
    *,
    dm_type: DMType,
    name: str,
    notice_text: str,
    internal_default: bool,
    name_zh_hant: str = "",
    name_zh_hans: str = "",
    notice_text_zh_hant: str = "",
    notice_text_zh_hans: str = "",
    by: AbstractBaseUser | None,
) -> DMType:
    """Change a DM type; a changed notice (in any language) becomes a new version carrying all
    three texts, earlier grants keep theirs."""
    dm_type = DMType.objects.select_for_update().get(pk=dm_type.pk)
    changed = []
    wanted = {
        "name": name,
        "name_zh_hant": name_zh_hant.strip(),
        "name_zh_hans": name_zh_hans.strip(),
        "internal_default": internal_default,
    }
    for field, value in wanted.items():
        if value != getattr(dm_type, field):
            setattr(dm_type, field, value)
            changed.append(field)
    if changed:
        dm_type.full_clean(validate_constraints=False)
        dm_type.save(update_fields=changed)
    current = dm_type.current_notice
    texts = {
        "text": notice_text.strip(),
        "text_zh_hant": notice_text_zh_hant.strip(),
        "text_zh_hans": notice_text_zh_hans.strip(),
    }
    if not texts["text"]:
        raise ValidationError("The notice cannot be empty.")
    if current is None or any(getattr(current, f) != t for f, t in texts.items()):
        version = (current.version if current else 0) + 1
        DMTypeNotice.objects.create(dm_type=dm_type, version=version, created_by=by, **texts)
        changed.append(f"notice v{version}")
    if changed:
        audit_record(
            unit=dm_type.unit,
            actor=by,
            verb="dm_type.change",
            obj=dm_type,
            data={"changed": changed},
        )
    return dm_type


def dm_type_archive(*, dm_type: DMType, by: AbstractBaseUser | None) -> bool:
    """Archive a DM type: no new grants or campaigns, the ledger stays. False if already done."""
    with transaction.atomic():
        count = DMType.objects.filter(pk=dm_type.pk, archived_at__isnull=True).update(
            archived_at=timezone.now()
        )
        if count:
            audit_record(unit=dm_type.unit, actor=by, verb="dm_type.archive", obj=dm_type)
    return bool(count)


# The ledger ----------------------------------------------------------------------------------


def _who(actor: AbstractBaseUser | None, actor_label: str) -> Who:
    if actor is not None and actor.is_authenticated:
        return Who(actor_id=actor.pk, actor_label=actor_label or actor.get_username())
    return Who(actor_id=None, actor_label=actor_label or "system")


def _lock(recipient: Recipient) -> Recipient:
    # One consent change per recipient at a time: events of a recipient get ids in commit order,
    # so "latest" is the highest id, and the subscription row is written without races.
    return Recipient.objects.select_for_update().get(pk=recipient.pk)


def _check_dm_types(recipient: Recipient, dm_types: Sequence[DMType], *, granting: bool) -> None:
    for dm_type in dm_types:
        if dm_type.unit_id != recipient.unit_id:
            raise ConsentError(f"The DM type {dm_type.name!r} belongs to another unit.")
        if granting and dm_type.is_archived:
            raise ConsentError(f"The DM type {dm_type.name!r} is archived; nothing can be granted.")


def grant(
    *,
    recipient: Recipient,
    dm_types: Sequence[DMType],
    channel: Channel,
    evidence: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
    campaign_code: UUID | None = None,
    notice_version: int | None = None,
    locked: bool = False,
) -> list[ConsentEvent]:
    """Record a grant per DM type with its evidence and notice version (I2: never without proof).

    `notice_version`: the version the person was shown (one DM type only); default the current.
    `locked`: the caller made or locked (select_for_update) the recipient's row in its
    transaction, so the row is current and needs no second read; nor a savepoint, as the
    checks write nothing and `record` writes in one statement.
    """
    if not evidence or not evidence.strip():
        raise ConsentError(
            "A grant needs evidence: say where and how the person agreed "
            "(e.g. 'Open-day registration form, consent clause v3, June 2025')."
        )
    if not dm_types:
        raise ConsentError("Name the DM types that are granted; 'all DM types' is never implied.")
    with nullcontext() if locked else transaction.atomic():
        if not locked:
            recipient = _lock(recipient)
        if recipient.status == RecipientStatus.ERASED:
            raise ConsentError("This recipient was erased; consent cannot be recorded.")
        _check_dm_types(recipient, dm_types, granting=True)
        notice = None
        if notice_version is not None:
            if len(dm_types) != 1:
                raise ConsentError("A notice version names the notice of one DM type: grant one.")
            notice = fetch_model(
                DMTypeNotice, "dm_type_id = %s AND version = %s", [dm_types[0].pk, notice_version]
            )
            if notice is None:
                current = dm_types[0].current_notice
                raise ConsentError(
                    f"The DM type {dm_types[0].name!r} has no notice version {notice_version} "
                    f"(the current one is {current.version if current else 'none'})."
                )
        return record(
            recipient=recipient,
            action=Action.GRANT,
            dm_types=dm_types,
            channel=channel,
            evidence=evidence.strip(),
            who=_who(actor, actor_label),
            ip_address=ip_address,
            user_agent=user_agent,
            campaign_code=campaign_code,
            notice=notice,
        )


def withdraw(
    *,
    recipient: Recipient,
    dm_types: Sequence[DMType] | None,
    channel: Channel,
    evidence: str = "",
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
    campaign_code: UUID | None = None,
    everywhere: bool = False,
    locked: bool = False,
) -> list[ConsentEvent]:
    """Withdraw the DM types named, or with `dm_types=None` every DM type of the unit (I6).
    `everywhere`: part of a withdrawal from every unit (the scope outbound events report);
    `locked` as for `grant`."""
    with nullcontext() if locked else transaction.atomic():
        if not locked:
            recipient = _lock(recipient)
        scopes: list[DMType | None] = [None] if dm_types is None else list(dm_types)
        _check_dm_types(recipient, [s for s in scopes if s is not None], granting=False)
        return record(
            recipient=recipient,
            action=Action.WITHDRAW,
            dm_types=scopes,
            channel=channel,
            evidence=evidence.strip(),
            who=_who(actor, actor_label),
            ip_address=ip_address,
            user_agent=user_agent,
            campaign_code=campaign_code,
            scope=SCOPE_EVERYWHERE if everywhere else None,
        )


@transaction.atomic
def withdraw_everywhere(
    *,
    email: str,
    channel: Channel,
    evidence: str = "",
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
    note: str = "",
) -> Suppression:
    """Stop all marketing from the institution: a global suppression, and in every unit that
    holds the address a withdrawal of all its DM types (the ledger shows the refusal)."""
    normalised = normalise_address(email)
    carry_case_sensitive_suppressions([normalised])
    for recipient in Recipient.objects.filter(email_hash=address_hash(normalised)).exclude(
        status=RecipientStatus.ERASED
    ):
        withdraw(
            recipient=recipient,
            dm_types=None,
            channel=channel,
            evidence=evidence or "Opted out of all marketing from the institution",
            actor=actor,
            actor_label=actor_label,
            ip_address=ip_address,
            user_agent=user_agent,
            everywhere=True,
        )
    return suppress(
        email=normalised,
        unit=None,
        reason=SuppressionReason.OPT_OUT,
        note=note or evidence,
        by=actor,
    )


# Suppressions --------------------------------------------------------------------------------


@transaction.atomic
def suppress(
    *,
    email: str | None = None,
    email_hash: str | None = None,
    unit: SenderUnit | None,
    reason: SuppressionReason,
    note: str = "",
    by: AbstractBaseUser | None = None,
    keep_address: bool = True,
) -> Suppression:
    """Add (or keep) a suppression of an address for one unit, or for every unit if `unit` is None.

    An existing suppression of the same scope is kept as it is: the first reason stands.
    """
    if email is None and email_hash is None:
        raise ValueError("suppress() needs an email or an email_hash")
    normalised = normalise_address(email) if email is not None else ""
    digest = email_hash or address_hash(normalised)
    existing = Suppression.objects.filter(unit=unit, email_hash=digest).first()
    if existing is not None:
        return existing
    suppression = Suppression.objects.create(
        unit=unit,
        email=normalised if keep_address else "",
        email_hash=digest,
        reason=reason,
        note=note,
        created_by=by if by is not None and by.is_authenticated else None,
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="suppression.create",
        obj=suppression,
        data={"reason": str(reason), "scope": "unit" if unit else "global"},
    )
    if reason != SuppressionReason.ERASURE:  # an erasure says so itself, without the address
        _emit_suppressed(suppression)
    return suppression


# What a unit may record itself; bounces, complaints and erasure come from their own paths.
UNIT_SUPPRESSION_REASONS = (SuppressionReason.MANUAL, SuppressionReason.OPT_OUT)


@transaction.atomic
def suppression_add(
    *,
    unit: SenderUnit,
    email: str,
    reason: str = SuppressionReason.MANUAL,
    note: str = "",
    by: AbstractBaseUser | None,
) -> tuple[Suppression, bool]:
    """Suppress an address for the unit (or keep the suppression it has); returns it and
    whether it is new. The address of an erased person is kept as a hash alone (I9)."""
    if reason not in UNIT_SUPPRESSION_REASONS:
        raise ValidationError(
            f"A unit records the reasons {' or '.join(UNIT_SUPPRESSION_REASONS)}; "
            "bounces, complaints and erasures are recorded where they happen."
        )
    try:
        normalised = normalise_address(email)
    except InvalidAddress as error:
        raise ValidationError(str(error)) from None
    carry_case_sensitive_suppressions([normalised])
    digest = address_hash(normalised)
    existing = Suppression.objects.for_unit(unit).filter(email_hash=digest).first()
    if existing is not None:
        return existing, False
    erased = Suppression.objects.filter(
        unit__isnull=True, email_hash=digest, reason=SuppressionReason.ERASURE
    ).exists()
    suppression = suppress(
        email_hash=digest if erased else None,
        email=None if erased else normalised,
        unit=unit,
        reason=SuppressionReason(reason),
        note=note,
        by=by,
        keep_address=not erased,
    )
    return suppression, True


def _emit_suppressed(suppression: Suppression) -> None:
    """Tell the endpoints of every unit holding the address (of its unit only, for a unit's
    suppression) that it is suppressed."""
    held = Recipient.objects.filter(email_hash=suppression.email_hash).exclude(
        status=RecipientStatus.ERASED
    )
    if suppression.unit_id is not None:
        held = held.filter(unit_id=suppression.unit_id)
    extra = {
        "scope": SCOPE_UNIT if suppression.unit_id else SCOPE_EVERYWHERE,
        "reason": str(suppression.reason),
    }
    recipient_events_emit(type=EventType.SUPPRESSED, recipients=[(r, extra) for r in held])


def carry_case_sensitive_suppressions(addresses: Iterable[str]) -> int:
    """Re-hash the case-sensitive suppressions (see Suppression.case_sensitive) of `addresses`.

    Such a suppression matched one spelling of an address; once that spelling is seen again, it
    gets the hash every case variant matches. If its scope already has one under that hash,
    the stronger reason stays (erasure above all) and the old one goes. Returns how many.
    """
    by_old_hash = {case_sensitive_hash(a): a for a in addresses if a != address_key(a)}
    if not by_old_hash:
        return 0
    carried = 0
    with transaction.atomic():  # only when there is something to carry: no savepoint else
        for old in Suppression.objects.select_for_update().filter(
            case_sensitive=True, email_hash__in=by_old_hash
        ):
            digest = address_hash(by_old_hash[old.email_hash])
            twin = Suppression.objects.filter(unit=old.unit_id, email_hash=digest).first()
            if twin is None:
                old.email_hash, old.case_sensitive = digest, False
                old.save(update_fields=["email_hash", "case_sensitive"])
            else:
                if old.reason == SuppressionReason.ERASURE:
                    twin.reason, twin.note, twin.email = old.reason, old.note, ""
                    twin.save(update_fields=["reason", "note", "email"])
                old.delete()
            carried += 1
    return carried


@transaction.atomic
def unsuppress(*, suppression: Suppression, by: AbstractBaseUser | None) -> None:
    """Lift a suppression (operations only; erasure suppressions are never lifted)."""
    if suppression.reason == SuppressionReason.ERASURE:
        raise ValidationError("An erasure suppression cannot be lifted: the person asked for it.")
    audit_record(
        unit=suppression.unit,
        actor=by,
        verb="suppression.delete",
        obj=suppression,
        data={"reason": suppression.reason},
    )
    suppression.delete()
