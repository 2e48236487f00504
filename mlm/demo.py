"""The demo data `make run` creates: units, an administrator, and what each app adds."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from mlm.models import Role, SenderUnit
from mlm.services import membership_set, unit_create

DEMO_USERNAME = "demo"
DEMO_UNITS = [
    {
        "name": "Faculty of Engineering",
        "slug": "engineering",
        "postal_address": (
            "Faculty of Engineering\nExample University\n1 University Road, Hong Kong"
        ),
    },
    {
        "name": "Alumni Relations Office",
        "slug": "alumni",
        "postal_address": (
            "Alumni Relations Office\nExample University\n1 University Road, Hong Kong"
        ),
    },
]


@dataclass
class DemoLogin:
    username: str
    password: str
    created: bool


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-login.txt"


@transaction.atomic
def demo_setup() -> DemoLogin:
    """Create the demo units and administrator once; later runs reuse them and their password."""
    User = get_user_model()
    path = _credentials_file()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    created = user is None
    if created or not path.exists():
        password = secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_superuser(
                DEMO_USERNAME, email="demo.admin@example.edu", password=password
            )
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password)
        path.chmod(0o600)
    password = path.read_text().strip()
    for spec in DEMO_UNITS:
        unit = SenderUnit.objects.filter(slug=spec["slug"]).first()
        if unit is None:
            unit = unit_create(by=None, **spec)
        if not unit.memberships.filter(user=user).exists():
            membership_set(unit=unit, user=user, role=Role.ADMIN, by=None)
    return DemoLogin(DEMO_USERNAME, password, created)
