"""Mail backends of the core: the embedded default's Outbox, and the test message."""

from __future__ import annotations

from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string

from mlm.models import OutboxMessage, SenderUnit


class OutboxBackend(BaseEmailBackend):
    """Keep every message in the database, where unit administrators read it in the Outbox page.

    The embedded default: nothing leaves the machine, and a newcomer sees exactly what a
    recipient would get (the raw message is stored as a relay would receive it).
    """

    def send_messages(self, email_messages) -> int:
        rows = []
        for message in email_messages:
            recipients = message.recipients()
            if not recipients:
                continue
            rows.append(
                OutboxMessage(
                    unit_id=getattr(message, "mlm_unit_id", None),
                    campaign_id=getattr(message, "mlm_campaign_id", None),
                    from_email=message.from_email,
                    recipients="\n".join(recipients),
                    about_hash=getattr(message, "mlm_about_hash", ""),
                    subject=str(message.subject)[:500],
                    raw=message.message().as_bytes(linesep="\r\n"),
                )
            )
        OutboxMessage.objects.bulk_create(rows)
        return len(rows)


def build_test_message(*, unit: SenderUnit, to: str) -> EmailMultiAlternatives:
    """A small HTML and text message that shows the unit's identity and footer."""
    context = {"unit": unit, "site_url": settings.SITE_URL}
    message = EmailMultiAlternatives(
        subject=f"[TEST] Mail from {unit.name} through MLM",
        body=render_to_string("mlm/mail/test_message.txt", context),
        from_email=formataddr((unit.name, settings.DEFAULT_FROM_EMAIL)),
        to=[to],
    )
    message.attach_alternative(render_to_string("mlm/mail/test_message.html", context), "text/html")
    message.mlm_unit_id = unit.pk
    return message
