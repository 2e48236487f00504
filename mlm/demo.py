"""The demo data `make run` creates: units, an administrator, an approver, and what each app
adds."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from campaigns.demo import demo_setup_campaigns
from campaigns.units import unit_create
from consent.models import Channel, DMType
from consent.services import dm_type_create, grant, withdraw
from mlm.models import Role, SenderUnit
from mlm.services import membership_set
from recipients.models import Audience
from recipients.services import list_add_members, list_create, recipient_upsert

DEMO_USERNAME = "demo"
DEMO_APPROVER_USERNAME = "approver"
DEMO_UNITS = [
    {
        "name": "Faculty of Engineering",
        "slug": "engineering",
        "postal_address": (
            "Faculty of Engineering\nExample University\n1 University Road, Hong Kong"
        ),
    },
    {
        # Left empty on purpose: its dashboard shows what a new unit sets up first.
        "name": "Alumni Relations Office (empty example)",
        "slug": "alumni",
        "postal_address": (
            "Alumni Relations Office\nExample University\n1 University Road, Hong Kong"
        ),
    },
]


@dataclass
class DemoLogin:
    label: str
    username: str
    password: str
    created: bool


def _credentials_file(username: str) -> Path:
    name = "demo-login.txt" if username == DEMO_USERNAME else f"demo-{username}-login.txt"
    return Path(settings.VAR_DIR) / name


def _demo_user(username: str, email: str, *, superuser: bool) -> tuple[AbstractBaseUser, bool]:
    """The demo user `username` and whether it was made now; its password is kept in var."""
    User = get_user_model()
    path = _credentials_file(username)
    user = User.objects.filter(username=username).first()
    created = user is None
    if created or not path.exists():
        password = secrets.token_urlsafe(12)
        if user is None:
            make = User.objects.create_superuser if superuser else User.objects.create_user
            user = make(username, email=email, password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password)
        path.chmod(0o600)
    return user, created


@transaction.atomic
def demo_setup() -> list[DemoLogin]:
    """Create the demo units, their administrator and an approver once; later runs reuse them
    and their passwords. The administrator writes the demo campaign; the approver signs it off
    (maker-checker: nobody approves their own campaign unless the unit allows it)."""
    user, created = _demo_user(DEMO_USERNAME, "demo.admin@example.edu", superuser=True)
    approver, approver_created = _demo_user(
        DEMO_APPROVER_USERNAME, "demo.approver@example.edu", superuser=False
    )
    for spec in DEMO_UNITS:
        unit = SenderUnit.objects.filter(slug=spec["slug"]).first()
        if unit is None:
            unit = unit_create(by=None, **spec)
        if not unit.memberships.filter(user=user).exists():
            membership_set(unit=unit, user=user, role=Role.ADMIN, by=None)
    engineering = SenderUnit.objects.get(slug="engineering")
    if not engineering.memberships.filter(user=approver).exists():
        membership_set(unit=engineering, user=approver, role=Role.APPROVER, by=None)
    if not DMType.objects.for_unit(engineering).exists():
        _demo_audience(engineering, user)
    demo_setup_campaigns(engineering, user)
    return [
        DemoLogin(
            "Demo editor and administrator",
            DEMO_USERNAME,
            _credentials_file(DEMO_USERNAME).read_text().strip(),
            created,
        ),
        DemoLogin(
            "Demo approver",
            DEMO_APPROVER_USERNAME,
            _credentials_file(DEMO_APPROVER_USERNAME).read_text().strip(),
            approver_created,
        ),
    ]


# DM types, lists and recipients of the Engineering demo unit -----------------------------------

DEMO_DM_TYPES = [
    (
        "newsletter",
        "Newsletter",
        True,
        "The Faculty of Engineering newsletter: news of our research, teaching, students and "
        "alumni, about once a month.",
    ),
    (
        "events",
        "Event invitations",
        False,
        "Invitations to lectures, open days, industry days and other events that the Faculty of "
        "Engineering organises.",
    ),
    (
        "fundraising",
        "Fundraising appeals",
        False,
        "Requests to support scholarships, research and facilities of the Faculty of "
        "Engineering with a donation.",
    ),
    (
        "seminars",
        "Research seminars",
        False,
        "Announcements of research seminars and public lectures of the Faculty's departments.",
    ),
]

# (email, first name, last name, category, locale, grants: DM type keys)
DEMO_INTERNAL = [
    ("t.m.chan@example.edu", "大文", "陳", "staff", "zh-hant", ["events"]),
    ("mei.ling.wong@example.edu", "美玲", "黃", "staff", "zh-hant", []),
    ("k.lee@example.edu", "Kenneth", "Lee", "staff", "en", ["events", "seminars"]),
    ("sarah.ho@example.edu", "Sarah", "Ho", "staff", "en", []),
    ("j.smith@example.edu", "John", "Smith", "staff", "en", ["seminars"]),
    ("ka.yan.lam@example.edu", "家欣", "林", "staff", "zh-hant", []),
    ("wing.cheung@connect.example.edu", "Wing", "Cheung", "student", "en", ["seminars"]),
    ("hiu.tung.ng@connect.example.edu", "曉彤", "吳", "student", "zh-hant", []),
    ("amir.khan@connect.example.edu", "Amir", "Khan", "student", "en", ["events"]),
    ("li.na@connect.example.edu", "娜", "李", "student", "zh-hans", ["seminars"]),
    ("priya.nair@connect.example.edu", "Priya", "Nair", "student", "en", []),
    ("ming.tsang@connect.example.edu", "Ming", "Tsang", "student", "en", []),
    ("chi.wai.leung@alumni.example.edu", "志偉", "梁", "alumni", "zh-hant", ["fundraising"]),
    ("grace.yip@alumni.example.edu", "Grace", "Yip", "alumni", "en", ["fundraising", "events"]),
    ("david.fung@alumni.example.edu", "David", "Fung", "alumni", "en", []),
    ("siu.ming.ho@alumni.example.edu", "小明", "何", "alumni", "zh-hant", []),
    ("oliver.tam@alumni.example.edu", "Oliver", "Tam", "alumni", "en", ["fundraising"]),
]
DEMO_EXTERNAL = [
    ("m.wong@hk-infra.example.com", "Michael", "Wong", "external", "en", ["events"]),
    ("anna.schmidt@example.de", "Anna", "Schmidt", "external", "en", ["events", "seminars"]),
    ("procurement@example.org", "", "", "external", "en", []),
    ("ka.ming.chow@example.com.hk", "嘉明", "周", "external", "zh-hant", ["events"]),
    ("r.patel@example.co.uk", "Raj", "Patel", "external", "en", []),
    ("yuki.tanaka@example.jp", "Yuki", "Tanaka", "external", "en", ["seminars"]),
    ("fiona.lau@example.net", "Fiona", "Lau", "external", "en", ["events"]),
    ("s.kwok@greenbuild.example.com", "慧詩", "郭", "external", "zh-hant", []),
    ("tom.baker@example.com", "Tom", "Baker", "external", "en", ["events", "fundraising"]),
    ("info@robotics.example.org", "", "", "external", "en", []),
    ("elena.rossi@example.it", "Elena", "Rossi", "external", "en", ["seminars"]),
    ("h.yeung@example.com", "Henry", "Yeung", "external", "en", ["events"]),
    ("c.ng@example.net", "Carmen", "Ng", "external", "en", []),
]
DEMO_EVIDENCE = {
    "newsletter": "Demo data: subscribed on the Faculty website's newsletter form, 2025",
    "events": "Demo data: ticked the event invitations box on the Industry Day 2025 form",
    "fundraising": "Demo data: reply card of the alumni reunion dinner, 2025, consent clause v1",
    "seminars": "Demo data: signed the research seminar mailing sheet, September 2025",
}


def _demo_audience(unit: SenderUnit, user) -> None:
    """Four DM types, an internal and an external list, 30 recipients, grants and withdrawals."""
    dm_types = {
        key: dm_type_create(
            unit=unit,
            key=key,
            name=name,
            notice_text=notice,
            internal_default=internal_default,
            by=user,
        )
        for key, name, internal_default, notice in DEMO_DM_TYPES
    }
    lists = {
        Audience.INTERNAL: list_create(
            unit=unit,
            name="All staff",
            audience=Audience.INTERNAL,
            description="Staff, students and alumni of the Faculty (demo data).",
            by=user,
        ),
        Audience.EXTERNAL: list_create(
            unit=unit,
            name="Industry partners",
            audience=Audience.EXTERNAL,
            description="Companies and people the Faculty works with (demo data).",
            by=user,
        ),
    }
    people = {}
    for email, first, last, category, locale, keys in DEMO_INTERNAL + DEMO_EXTERNAL:
        recipient, _ = recipient_upsert(
            unit=unit,
            email=email,
            category=category,
            first_name=first,
            last_name=last,
            locale=locale,
            by=user,
        )
        people[email] = recipient
        for key in keys:
            grant(
                recipient=recipient,
                dm_types=[dm_types[key]],
                channel=Channel.IMPORT,
                evidence=DEMO_EVIDENCE[key],
                actor=user,
            )
    for audience, rows in ((Audience.INTERNAL, DEMO_INTERNAL), (Audience.EXTERNAL, DEMO_EXTERNAL)):
        list_add_members(
            recipient_list=lists[audience], recipients=[people[r[0]] for r in rows], by=user
        )
    withdraw(
        recipient=people["sarah.ho@example.edu"],
        dm_types=[dm_types["newsletter"]],
        channel=Channel.PREFERENCE_CENTRE,
        evidence="Demo data: chose no newsletter in the preference centre",
        actor_label="recipient",
    )
    withdraw(
        recipient=people["fiona.lau@example.net"],
        dm_types=None,
        channel=Channel.ONE_CLICK,
        actor_label="recipient",
    )
