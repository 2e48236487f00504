"""Campaign objects for tests, made through the services (the demo newsletter by default)."""

from __future__ import annotations

from typing import Any

from campaigns.demo import DEMO_BODY, DEMO_LAYOUT, DEMO_SUBJECT
from campaigns.models import Campaign, Layout, SenderIdentity
from campaigns.services.authoring import campaign_create, identity_create, layout_create
from consent.models import Channel, DMType
from consent.services import dm_type_create, grant
from mlm.models import SenderUnit
from recipients.models import Audience, Category, Recipient, RecipientList
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.personas import World


def identity(unit: SenderUnit) -> SenderIdentity:
    found = SenderIdentity.objects.for_unit(unit).first()
    if found is None:
        found = identity_create(
            unit=unit, name=unit.name, email=f"news@{unit.slug}.example.edu", by=None
        )
    return found


def layout(unit: SenderUnit, html: str = DEMO_LAYOUT, name: str = "Newsletter") -> Layout:
    found = Layout.objects.for_unit(unit).filter(name=name).first()
    if found is None:
        found = layout_create(unit=unit, name=name, html=html, by=None)
    return found


def dm_type(unit: SenderUnit, key: str = "newsletter", internal_default: bool = False) -> DMType:
    found = DMType.objects.for_unit(unit).filter(key=key).first()
    if found is None:
        found = dm_type_create(
            unit=unit,
            key=key,
            name=key.capitalize(),
            notice_text=f"{key.capitalize()} of the unit.",
            internal_default=internal_default,
            by=None,
        )
    return found


def recipient_list(
    unit: SenderUnit, audience: str = Audience.EXTERNAL, name: str = ""
) -> RecipientList:
    name = name or f"{audience.capitalize()} friends"
    found = RecipientList.objects.for_unit(unit).filter(name=name).first()
    if found is None:
        found = list_create(unit=unit, name=name, audience=audience, by=None)
    return found


def member(
    target: RecipientList,
    email: str,
    *,
    category: str = Category.EXTERNAL,
    granted: DMType | None = None,
    **fields: Any,
) -> Recipient:
    """A recipient on `target`, with a grant of `granted` if given."""
    recipient, _ = recipient_upsert(
        unit=target.unit, email=email, category=category, by=None, **fields
    )
    list_add_members(recipient_list=target, recipients=[recipient], by=None)
    if granted is not None:
        grant(
            recipient=recipient,
            dm_types=[granted],
            channel=Channel.ADMIN,
            evidence="Signed the open-day form, consent clause v3",
        )
    return recipient


def campaign(world: World, *, by=None, **overrides: Any) -> Campaign:
    """A draft of the demo newsletter by bob, to an external list, passing every check."""
    unit = overrides.pop("unit", world.unit)
    values: dict[str, Any] = {
        "name": "Spring news",
        "dm_type": dm_type(unit),
        "audience": Audience.EXTERNAL,
        "lists": [recipient_list(unit)],
        "identity": identity(unit),
        "subject": DEMO_SUBJECT,
        "html_body": DEMO_BODY,
        "layout": layout(unit),
    }
    values.update(overrides)
    return campaign_create(unit=unit, by=by or world.bob, **values)


def campaign_code(world: World) -> str:
    found = Campaign.objects.for_unit(world.unit).filter(name="Walked campaign").first()
    if found is None:
        found = campaign(world, name="Walked campaign")
    return str(found.code)


def layout_code(world: World) -> str:
    return str(layout(world.unit).code)
