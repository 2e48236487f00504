"""What the core does: memberships, the audit log, heartbeats, the test mail and the
sending domains' DKIM keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from mlm.mail import dkim
from mlm.models import (
    AuditEntry,
    Heartbeat,
    Membership,
    MembershipSource,
    Role,
    SenderUnit,
    SendingDomain,
)
from mlm.queue import enqueue_on_commit

# Who acts when no user does: an API key ("API key 1a2b3c4d (CRM)") rather than "system".
_acting_as: ContextVar[str] = ContextVar("acting_as", default="system")


@contextmanager
def acting_as(label: str) -> Iterator[None]:
    """Within the block, audit entries made without a user name `label` as their actor."""
    token = _acting_as.set(label[:150])
    try:
        yield
    finally:
        _acting_as.reset(token)


def audit_record(
    *,
    unit: SenderUnit | None,
    actor: AbstractBaseUser | None,
    verb: str,
    obj: models.Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry; callers pass codes and counts in `data`, never personal data."""
    object_type = object_id = object_repr = ""
    if obj is not None:
        object_type = obj._meta.label_lower
        object_id = str(getattr(obj, "code", None) or obj.pk)
        object_repr = getattr(obj, "audit_label", None) or str(obj)
    return AuditEntry.objects.create(
        unit=unit,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_label=actor.get_username()
        if actor is not None and actor.is_authenticated
        else _acting_as.get(),
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        data=data or {},
    )


@transaction.atomic
def membership_set(
    *, unit: SenderUnit, user: AbstractBaseUser, role: Role, by: AbstractBaseUser | None
) -> Membership:
    """Give `user` the role `role` in `unit` (creating or changing the membership), recorded.
    Set by hand: single sign-on leaves it alone from then on."""
    membership, created = Membership.objects.update_or_create(
        unit=unit, user=user, defaults={"role": Role(role), "source": MembershipSource.MANUAL}
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="membership.create" if created else "membership.change",
        obj=membership,
        data={"user": user.get_username(), "role": str(role)},
    )
    return membership


def heartbeat_record(*, name: str) -> Heartbeat:
    """Note that the component `name` is alive now."""
    beat, _ = Heartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now()})
    return beat


def heartbeat_age(*, name: str) -> float | None:
    """Seconds since `name` last reported, or None if it never did."""
    seen = Heartbeat.objects.filter(name=name).values_list("seen_at", flat=True).first()
    return None if seen is None else (timezone.now() - seen).total_seconds()


def unit_send_test_mail(*, unit: SenderUnit, by: AbstractBaseUser) -> None:
    """Queue a sample message to the user's own address through the configured mail backend."""
    audit_record(unit=unit, actor=by, verb="mail.test", data={"to": by.email})
    enqueue_on_commit("mlm.tasks.send_test_mail", unit.pk, by.pk)


@transaction.atomic
def sending_domain_create(
    *, domain: str, selector: str, by: AbstractBaseUser | None
) -> SendingDomain:
    """Give a From domain a new RSA-2048 DKIM key, encrypted at rest. It signs at once only if the
    domain had no active key; a rotation publishes the new record first, then activates it."""
    domain = domain.strip().lower().rstrip(".")
    selector = selector.strip().lower()
    private_pem, public_key = dkim.generate_key_pair()
    sending_domain = SendingDomain(
        domain=domain,
        selector=selector,
        private_key_encrypted=dkim.encrypt_private_key(private_pem),
        public_key=public_key,
        active=not SendingDomain.objects.filter(domain=domain, active=True).exists(),
    )
    sending_domain.full_clean()
    sending_domain.save()
    audit_record(
        unit=None,
        actor=by,
        verb="sending_domain.create",
        obj=sending_domain,
        data={"domain": domain, "selector": selector, "active": sending_domain.active},
    )
    return sending_domain


@transaction.atomic
def sending_domain_activate(*, sending_domain: SendingDomain, by: AbstractBaseUser | None) -> None:
    """Make this key the one that signs its domain's mail (the domain's other keys stop)."""
    SendingDomain.objects.filter(domain=sending_domain.domain, active=True).exclude(
        pk=sending_domain.pk
    ).update(active=False)
    SendingDomain.objects.filter(pk=sending_domain.pk).update(active=True)
    sending_domain.active = True
    audit_record(unit=None, actor=by, verb="sending_domain.activate", obj=sending_domain)


@transaction.atomic
def sending_domain_deactivate(
    *, sending_domain: SendingDomain, by: AbstractBaseUser | None
) -> None:
    """Stop signing with this key (mail From its domain then goes out unsigned by us)."""
    SendingDomain.objects.filter(pk=sending_domain.pk).update(active=False)
    sending_domain.active = False
    audit_record(unit=None, actor=by, verb="sending_domain.deactivate", obj=sending_domain)


def sending_domain_dns_record(sending_domain: SendingDomain) -> tuple[str, str]:
    """The TXT record operations publish for this key: (name, value)."""
    return dkim.dns_record(
        domain=sending_domain.domain,
        selector=sending_domain.selector,
        public_key=sending_domain.public_key,
    )


@transaction.atomic
def sending_domains_reencrypt(*, by: AbstractBaseUser | None) -> int:
    """Encrypt every stored DKIM key with the first MLM_DKIM_ENCRYPTION_KEY (after a rotation,
    before the old key is dropped); returns how many keys were rewritten."""
    rows = list(SendingDomain.objects.select_for_update().only("pk", "private_key_encrypted"))
    for row in rows:
        row.private_key_encrypted = dkim.reencrypt_private_key(row.private_key_encrypted)
    SendingDomain.objects.bulk_update(rows, ["private_key_encrypted"])
    audit_record(unit=None, actor=by, verb="sending_domain.reencrypt", data={"keys": len(rows)})
    return len(rows)
