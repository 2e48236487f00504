"""For each URL keyword under /units/<slug>/, make an object of the given unit and return the value.

The isolation test fills every unit URL with real objects of the unit, so that a 404 for an
outsider proves scoping, not a missing object. A later issue that adds a URL keyword adds its
maker here; the test names the missing one.
"""

from __future__ import annotations

from collections.abc import Callable

from mlm.mail import OutboxBackend, build_test_message
from mlm.models import OutboxMessage
from tests.personas import World


def _outbox_message(world: World) -> str:
    message = build_test_message(unit=world.unit, to="alice@staff.example.edu")
    OutboxBackend().send_messages([message])
    return str(OutboxMessage.objects.for_unit(world.unit).latest("created_at").code)


MAKERS: dict[str, Callable[[World], str]] = {
    "message_code": _outbox_message,
}
