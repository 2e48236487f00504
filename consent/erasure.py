"""What erasure (I9) does to the consent data: the events keep their facts without the
person's traces, and the address stays out for good as a keyed hash. recipients.rights calls
these inside its erasure transaction."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Case, Value, When

from consent.models import ERASED_EVIDENCE, ConsentEvent, Suppression, SuppressionReason
from consent.services import ConsentError, suppress
from mlm.services import audit_record
from recipients.models import Recipient, RecipientStatus


@transaction.atomic
def anonymise_events(*, recipient: Recipient) -> int:
    """Clear the IP address, user agent and evidence of an erased recipient's consent events;
    the facts (who, which DM type, grant or withdrawal, channel, notice, when) stay (I4, I9).

    The ledger trigger allows exactly this UPDATE, only under the transaction-local flag set
    here and only for a recipient already marked erased. Returns how many events were changed.
    """
    if recipient.status != RecipientStatus.ERASED:
        raise ConsentError("Only an erased recipient's consent events are anonymised.")
    events = ConsentEvent.objects.filter(recipient_id=recipient.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('mlm.erasure', 'on', true)")
        try:
            changed = events.update(
                ip_address=None,
                user_agent="",
                evidence=Case(When(evidence="", then=Value("")), default=Value(ERASED_EVIDENCE)),
            )
        finally:
            # Closed again at once: nothing later in an enclosing transaction may use it.
            cursor.execute("SELECT set_config('mlm.erasure', 'off', true)")
    return changed


@transaction.atomic
def suppress_erased(*, email_hash: str, by: AbstractBaseUser | None) -> Suppression:
    """Keep an erased address out for good: a global erasure suppression holding only the keyed
    hash, and no suppression of any unit still holding the address itself (I9).

    A global suppression that already exists for another reason becomes the erasure one: it
    must never be lifted (see `unsuppress`).
    """
    Suppression.objects.filter(email_hash=email_hash).exclude(email="").update(email="")
    upgraded = (
        Suppression.objects.filter(unit__isnull=True, email_hash=email_hash)
        .exclude(reason=SuppressionReason.ERASURE)
        .update(reason=SuppressionReason.ERASURE, note="Erased at the person's request.")
    )
    if upgraded:
        suppression = Suppression.objects.get(unit__isnull=True, email_hash=email_hash)
        audit_record(
            unit=None,
            actor=by,
            verb="suppression.change",
            obj=suppression,
            data={"reason": SuppressionReason.ERASURE, "scope": "global"},
        )
        return suppression
    return suppress(
        email_hash=email_hash,
        unit=None,
        reason=SuppressionReason.ERASURE,
        note="Erased at the person's request.",
        by=by,
        keep_address=False,
    )
