"""A unit's campaign settings: self-approval, the mail backend, rate limits that pause a
campaign."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import transaction

from campaigns.models import CampaignStatus, UnitCampaignSettings
from mlm.models import Role, SenderUnit
from mlm.scoping import require_role
from mlm.services import audit_record

S = CampaignStatus


@transaction.atomic
def unit_settings_update(
    *,
    unit: SenderUnit,
    allow_self_approval: bool,
    frequency_cap_mails: int,
    frequency_cap_days: int,
    banned_words: str,
    tracking_enabled: bool | None = None,
    web_version_enabled: bool | None = None,
    by: AbstractBaseUser | None,
    mail_backend: str = "",
    complaint_rate_limit: Decimal | None = None,
    hard_bounce_rate_limit: Decimal | None = None,
) -> UnitCampaignSettings:
    """Change the unit's campaign rules, recorded; the mail backend is one operations offer
    (settings.MLM_MAIL_BACKENDS) or the default; the circuit breaker's limits may be lowered,
    never raised above the institution's ceilings (the model's validators)."""
    require_role(unit, by, Role.ADMIN)
    limits = {
        name: _rate_limit(name, value)
        for name, value in (
            ("complaint_rate_limit", complaint_rate_limit),
            ("hard_bounce_rate_limit", hard_bounce_rate_limit),
        )
        if value is not None
    }
    if frequency_cap_mails and frequency_cap_days < 1:
        raise ValidationError("A frequency cap needs a period of at least one day.")
    if mail_backend and mail_backend not in settings.MLM_MAIL_BACKENDS:
        raise ValidationError(f"There is no mail backend {mail_backend!r} to choose.")
    settings_row, _ = UnitCampaignSettings.objects.update_or_create(
        unit=unit,
        defaults={
            "allow_self_approval": allow_self_approval,
            "frequency_cap_mails": frequency_cap_mails,
            "frequency_cap_days": frequency_cap_days,
            "banned_words": "\n".join(w.strip() for w in banned_words.splitlines() if w.strip()),
            "mail_backend": mail_backend,
            **limits,
            # Tracking and web versions stay as they are unless the caller says.
            **({} if tracking_enabled is None else {"tracking_enabled": tracking_enabled}),
            **({} if web_version_enabled is None else {"web_version_enabled": web_version_enabled}),
        },
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="campaign_settings.change",
        data={
            "allow_self_approval": allow_self_approval,
            "frequency_cap": [frequency_cap_mails, frequency_cap_days],
            "banned_words": len(settings_row.banned_word_list),
            "tracking_enabled": settings_row.tracking_enabled,
            "web_version_enabled": settings_row.web_version_enabled,
            "mail_backend": mail_backend or "default",
            **{name: str(value) for name, value in limits.items()},
        },
    )
    return settings_row


def _rate_limit(name: str, value: Decimal) -> Decimal:
    """A breaker limit (percent) within the bounds of its model field, or a clear refusal."""
    field = UnitCampaignSettings._meta.get_field(name)
    bounds = {
        type(v): v.limit_value
        for v in field.validators
        if isinstance(v, MinValueValidator | MaxValueValidator)
    }
    lowest, highest = bounds[MinValueValidator], bounds[MaxValueValidator]
    label = "complaint-rate" if name == "complaint_rate_limit" else "hard-bounce-rate"
    if not lowest <= value <= highest:
        raise ValidationError(
            f"The {label} limit must be between {lowest.normalize():f}% and "
            f"{highest.normalize():f}%: {value.normalize():f}% is refused. A unit may pause "
            "its campaigns sooner than the institution does, never later."
        )
    if value != value.quantize(Decimal("0.001")):
        raise ValidationError(f"The {label} limit takes at most three decimals.")
    return value
