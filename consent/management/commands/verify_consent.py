"""`manage.py verify_consent`: the subscription rows must equal the fold of the ledger (I4)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from consent.models import ConsentEvent, DMType, Subscription
from consent.selectors import MISMATCH_KINDS, subscription_mismatches
from recipients.models import Recipient


class Command(BaseCommand):
    help = (
        "Recompute every subscription from the consent events and report each difference; "
        "exits non-zero if there is any."
    )

    def handle(self, *args, **options) -> None:
        mismatches = subscription_mismatches()
        if not mismatches:
            self.stdout.write(
                f"OK: {Subscription.objects.count()} subscriptions match the fold of "
                f"{ConsentEvent.objects.count()} consent events."
            )
            return
        codes = dict(
            Recipient.objects.filter(pk__in={m.recipient_id for m in mismatches}).values_list(
                "pk", "code"
            )
        )
        dm_types = {
            t.pk: t for t in DMType.objects.filter(pk__in={m.dm_type_id for m in mismatches})
        }
        for m in mismatches:
            scope = (
                "all DM types"
                if m.dm_type_id is None
                else f"DM type {m.dm_type_id} ({dm_types[m.dm_type_id].key})"
            )
            expected = (
                f"{m.expected_state} (event {m.expected_event_id})"
                if m.expected_event_id
                else "no row"
            )
            actual = f"{m.actual_state} (event {m.actual_event_id})" if m.actual_state else "no row"
            self.stdout.write(
                f"{m.kind.upper()}: recipient {m.recipient_id} ({codes.get(m.recipient_id)}), "
                f"{scope}: ledger says {expected}, subscription has {actual} "
                f"— {MISMATCH_KINDS[m.kind]}"
            )
        raise CommandError(
            f"{len(mismatches)} subscription(s) differ from the consent ledger (I4).", returncode=1
        )
