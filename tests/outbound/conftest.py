"""Fixtures of outbound events: a unit with two DM types, recipients, and endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outbound.models import EventType
from outbound.services import endpoint_create
from tests.outbound.receiver import Faults, Receiver


@pytest.fixture(autouse=True)
def _loopback_endpoints(settings) -> None:
    settings.MLM_OUTBOUND_ALLOW_PRIVATE = True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on loopback that verifies signatures; its secret is set by `hooked`."""
    found = Receiver(secrets=[], faults=Faults()).start()
    try:
        yield found
    finally:
        found.stop()


def register(world, receiver: Receiver, types=None):
    """An endpoint of the unit pointing at the receiver, which learns its secret."""
    endpoint, secret = endpoint_create(
        unit=world.unit,
        url=receiver.url,
        event_types=types or EventType.values,
        by=world.alice,
    )
    receiver.secrets.append(secret)
    return endpoint
