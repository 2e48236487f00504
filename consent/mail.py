"""Mail of the consent app: the double opt-in confirmation, in the requester's language."""

from __future__ import annotations

from email.utils import parseaddr

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from consent.models import SubscriptionRequest
from consent.tokens import subscription_confirm_url
from mlm.mail.build import MessageBuilder, PrebuiltEmailMessage


def build_subscription_confirmation(
    *, subscription_request: SubscriptionRequest
) -> PrebuiltEmailMessage:
    """The mail whose link, and only that, lets a subscription request be confirmed; built as
    campaign mail is (headers folded and encoded by the project's builder), without the list
    headers of DM mail."""
    unit = subscription_request.unit
    context = {
        "unit": unit,
        "institution_name": settings.MLM_INSTITUTION_NAME,
        "dm_types": list(subscription_request.dm_types.order_by("name")),
        "confirm_url": subscription_confirm_url(request_code=subscription_request.code),
        "days": settings.MLM_SUBSCRIPTION_REQUEST_DAYS,
    }
    with translation.override(subscription_request.locale or settings.LANGUAGE_CODE):
        unit_name = unit.local_name
        subject = gettext("Please confirm your subscription to mail from %(unit)s") % {
            "unit": unit_name
        }
        text = render_to_string("public/mail/subscribe_confirm.txt", context)
        html = render_to_string("public/mail/subscribe_confirm.html", context)
    sender = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    builder = MessageBuilder(
        from_addr=sender,
        from_name=unit_name,
        subject=subject,
        message_id_domain=sender.rsplit("@", 1)[-1],
        unsubscribe_post=False,
    )
    built = builder.build(
        to_addr=subscription_request.email, text=text, html=html, unsubscribe_url=None
    )
    message = builder.django_message(built)
    message.mlm_unit_id = unit.pk
    return message
