"""Every URL under /units/<slug>/ filled with real objects of a unit: a maker per URL keyword.

The isolation test fills every unit URL with real objects of the unit, so that a 404 for an
outsider proves scoping, not a missing object; the accessibility test walks the same pages. A
later issue that adds a URL keyword adds its maker here; the test names the missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from consent.models import DMType
from consent.services import dm_type_create
from mlm.checks import unit_url_patterns
from mlm.mail import OutboxBackend, build_test_message
from mlm.models import OutboxMessage
from recipients.models import Audience, Category, RecipientList
from recipients.services import list_create, recipient_upsert
from tests.campaigns import factories as campaign_factories
from tests.personas import World


def _outbox_message(world: World) -> str:
    message = build_test_message(unit=world.unit, to="alice@staff.example.edu")
    OutboxBackend().send_messages([message])
    return str(OutboxMessage.objects.for_unit(world.unit).latest("created_at").code)


# Makers run once per URL that names the keyword: they reuse what an earlier call made.


def _list(world: World) -> str:
    made = RecipientList.objects.for_unit(world.unit).filter(name="Walked list").first()
    if made is None:
        made = list_create(unit=world.unit, name="Walked list", audience=Audience.EXTERNAL, by=None)
    return str(made.code)


def _recipient(world: World) -> str:
    recipient, _ = recipient_upsert(
        unit=world.unit, email="walked@example.com", category=Category.EXTERNAL, by=None
    )
    return str(recipient.code)


def _dm_type(world: World) -> str:
    made = DMType.objects.for_unit(world.unit).filter(key="walked").first()
    if made is None:
        made = dm_type_create(
            unit=world.unit, key="walked", name="Walked", notice_text="Walked notice.", by=None
        )
    return str(made.code)


def _import_job(world: World) -> str:
    """An import into the walked list that has run and rejected a row (its report exists)."""
    # Imported here: this maker was appended by the imports issue, the header is shared.
    from django.core.files.uploadedfile import SimpleUploadedFile

    from recipients.import_services import import_run, import_start, import_upload
    from recipients.models import ImportJob

    recipient_list = RecipientList.objects.for_unit(world.unit).get(code=_list(world))
    made = ImportJob.objects.filter(recipient_list=recipient_list).first()
    if made is None:
        data = b"email\r\nwalked-import@example.com\r\nnot an address\r\n"
        made, sniffed = import_upload(
            recipient_list=recipient_list, upload=SimpleUploadedFile("walked.csv", data), by=None
        )
        import_start(
            job=made, mapping=sniffed.mapping, mode="add", dm_types=[], by=None, enqueue=False
        )
        import_run(job_id=made.pk)
    return str(made.code)


def _segment(world: World) -> str:
    """A segment of the walked list with one attribute condition."""
    from recipients.models import Segment
    from recipients.segment_services import segment_create

    made = Segment.objects.for_unit(world.unit).filter(name="Walked segment").first()
    if made is None:
        recipient_list = RecipientList.objects.for_unit(world.unit).get(code=_list(world))
        conditions = {
            "match": "all",
            "groups": [
                {
                    "match": "all",
                    "conditions": [
                        {"field": "attribute", "key": "city", "op": "equals", "value": "Hong Kong"}
                    ],
                }
            ],
        }
        made = segment_create(
            unit=world.unit,
            name="Walked segment",
            lists=[recipient_list],
            conditions=conditions,
            by=None,
        )
    return str(made.code)


def _endpoint(world: World) -> str:
    """An outbound events endpoint of the unit (on loopback: nothing is delivered in the walk)."""
    from django.test import override_settings

    from outbound.models import Endpoint
    from outbound.services import endpoint_create

    made = Endpoint.objects.for_unit(world.unit).first()
    if made is None:
        with override_settings(MLM_OUTBOUND_ALLOW_PRIVATE=True):
            made, _ = endpoint_create(
                unit=world.unit, url="http://127.0.0.1:9/walked", event_types=["consent.granted"],
                by=None,
            )  # fmt: skip
    return str(made.code)


MAKERS: dict[str, Callable[[World], str]] = {
    "message_code": _outbox_message,
    "list_code": _list,
    "recipient_code": _recipient,
    "dm_type_code": _dm_type,
    "campaign_code": campaign_factories.campaign_code,
    "layout_code": campaign_factories.layout_code,
    "job_code": _import_job,
    "segment_code": _segment,
    "endpoint_code": _endpoint,
}


KWARG = re.compile(r"<(?:\w+:)?(\w+)>")


def unit_urls(world: World) -> list[tuple[str, str]]:
    """(route, concrete URL in world.unit) for every unit URL pattern."""
    urls = []
    for route, _pattern in unit_url_patterns():
        url = "/" + route
        for name in KWARG.findall(route):
            if name == "unit_slug":
                value = world.unit.slug
            else:
                assert name in MAKERS, (
                    f"add a maker for the URL keyword {name!r} to tests/url_objects.py"
                )
                value = MAKERS[name](world)
            url = re.sub(rf"<(?:\w+:)?{name}>", value, url, count=1)
        urls.append((route, url))
    return urls
