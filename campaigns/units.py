"""Opening a sender unit: the core's record, and the starter layout a unit's first draft needs
to pass the content checks without anyone writing a layout by hand. It lives here, above the
core, because the core knows nothing of campaigns."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from campaigns.services.authoring import starter_layout_create
from mlm.models import SenderUnit
from mlm.services import audit_record


@transaction.atomic
def unit_create(
    *,
    name: str,
    slug: str,
    postal_address: str,
    timezone_name: str = "Asia/Hong_Kong",
    default_locale: str = "en",
    by: AbstractBaseUser | None,
) -> SenderUnit:
    """Create a sender unit with the starter layout, recorded."""
    unit = SenderUnit(
        name=name,
        slug=slug,
        postal_address=postal_address,
        timezone=timezone_name,
        default_locale=default_locale,
    )
    unit.full_clean()
    unit.save()
    audit_record(unit=unit, actor=by, verb="unit.create", obj=unit)
    starter_layout_create(unit=unit, by=by)
    return unit
