"""Template filters of the recipient pages."""

from __future__ import annotations

from django import template

from recipients.models import Recipient
from recipients.selectors import is_cjk

register = template.Library()


@register.filter
def display_name(recipient: Recipient) -> str:
    """The name as the person writes it: Chinese, Japanese and Korean family name first."""
    if is_cjk(recipient.first_name + recipient.last_name):
        return f"{recipient.last_name}{recipient.first_name}"
    return recipient.full_name
