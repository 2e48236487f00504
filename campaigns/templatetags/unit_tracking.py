"""Template filters that let pages of the apps below campaigns say what a unit's campaign
settings are, without those apps importing campaigns."""

from __future__ import annotations

from django import template

from campaigns.selectors import unit_tracks_engagement
from mlm.models import SenderUnit

register = template.Library()


@register.filter
def tracks_engagement(unit: SenderUnit) -> bool:
    """Whether the unit tracks opens and clicks (the preference centre tells its readers)."""
    return unit_tracks_engagement(unit.pk)
