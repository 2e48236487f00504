"""Every URL under /units/<slug>/ filled with real objects of a unit: a maker per URL keyword.

The isolation test fills every unit URL with real objects of the unit, so that a 404 for an
outsider proves scoping, not a missing object; the accessibility test walks the same pages. A
later issue that adds a URL keyword adds its maker here; the test names the missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from api.checks import api_url_patterns
from consent.models import DMType
from consent.services import dm_type_create
from mlm.checks import unit_url_patterns
from mlm.mail.outbox import OutboxBackend, build_test_message
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


def _suppression(world: World) -> str:
    from consent.services import suppression_add

    made, _ = suppression_add(unit=world.unit, email="walked-suppressed@example.com", by=None)
    return str(made.code)


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


def _api_key(world: World) -> str:
    """A key of the unit, on the unit's API keys page."""
    from api.models import ApiKey, ApiRole
    from api.services import api_key_create

    made = ApiKey.objects.for_unit(world.unit).filter(name="Walked key").first()
    if made is None:
        made, _ = api_key_create(
            unit=world.unit, name="Walked key", role=ApiRole.VIEWER, expires_at=None, by=None
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
    "api_key_code": _api_key,
    "endpoint_code": _endpoint,
}


KWARG = re.compile(r"<(?:\w+:)?(\w+)>")

# The API names objects `code` (api.scoping): the maker comes from the view's model.
API_MAKERS: dict[str, Callable[[World], str]] = {
    "recipients.recipient": _recipient,
    "recipients.recipientlist": _list,
    "recipients.importjob": _import_job,
    "recipients.segment": _segment,
    "consent.dmtype": _dm_type,
    "consent.suppression": _suppression,
    "campaigns.campaign": campaign_factories.campaign_code,
    "api.apikey": _api_key,
}
API_KWARG = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


@dataclass(frozen=True)
class ApiRoute:
    """One route of the versioned API filled with objects of world.unit."""

    route: str
    url: str
    methods: list[str]  # lower case, as the test client names them
    names_object: bool  # the URL names an object of the unit (it has keywords)


def api_urls(world: World) -> list[ApiRoute]:
    """Every route under /api/v1/, its keywords filled with real objects of world.unit."""
    routes = []
    for route, pattern in api_url_patterns():
        view_class = pattern.callback.cls
        actions = getattr(pattern.callback, "actions", None)
        if actions:
            methods = sorted(actions)
        else:
            methods = [
                m
                for m in view_class.http_method_names
                if m not in ("options", "head") and hasattr(view_class, m)
            ]
        url = "/" + route.rstrip("$")
        names = [a or b for a, b in API_KWARG.findall(route)]
        for name in names:
            if name == "code":
                label = view_class.model._meta.label_lower
                assert label in API_MAKERS, (
                    f"add a maker for the model {label!r} to API_MAKERS in tests/url_objects.py"
                )
                value = API_MAKERS[label](world)
            else:
                assert name in MAKERS, (
                    f"add a maker for the URL keyword {name!r} to tests/url_objects.py"
                )
                value = MAKERS[name](world)
            url = re.sub(rf"<(?:\w+:)?{name}>|\(\?P<{name}>[^)]*\)", value, url, count=1)
        routes.append(ApiRoute(route, url, methods, bool(names)))
    return routes


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
