"""Campaigns, their layouts and sender identities, the unit's campaign settings, and deliveries.

A package of one idea a module; Django and the rest of the code import the models from here.
"""

from campaigns.models.campaign import (
    EDITABLE_STATUSES,
    SEND_ERROR_STATUSES,
    BodyFormat,
    Campaign,
    CampaignStatus,
    Layout,
)
from campaigns.models.deliveries import Delivery, DeliveryStatus, SkipReason
from campaigns.models.events import BounceKind, DeliveryEvent, EventKind
from campaigns.models.identities import IdentityStatus, SenderIdentity, SenderIdentityQuerySet
from campaigns.models.unit_settings import (
    BREAKER_MIN_ATTEMPTS,
    DEFAULT_BANNED_WORDS,
    UnitCampaignSettings,
)

__all__ = [
    "BREAKER_MIN_ATTEMPTS",
    "DEFAULT_BANNED_WORDS",
    "EDITABLE_STATUSES",
    "SEND_ERROR_STATUSES",
    "BodyFormat",
    "BounceKind",
    "Campaign",
    "CampaignStatus",
    "Delivery",
    "DeliveryEvent",
    "DeliveryStatus",
    "EventKind",
    "IdentityStatus",
    "Layout",
    "SenderIdentity",
    "SenderIdentityQuerySet",
    "SkipReason",
    "UnitCampaignSettings",
]
