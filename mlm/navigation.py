"""The unit navigation: each app adds its pages here, with the least role that sees them."""

from __future__ import annotations

from dataclasses import dataclass

from mlm.models import Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    role: Role


UNIT_NAV: list[NavItem] = [
    NavItem("Recipients", "recipients", Role.VIEWER),
    NavItem("Lists", "lists", Role.VIEWER),
    NavItem("Segments", "segments", Role.VIEWER),
    NavItem("DM types", "dm_types", Role.VIEWER),
    NavItem("Campaigns", "campaigns", Role.VIEWER),
    NavItem("Reports", "reports", Role.VIEWER),
    NavItem("Outbox", "outbox", Role.EDITOR),
    NavItem("Audit", "audit", Role.ADMIN),
]
