"""Reads of recipients, lists and segments for the browser: search, filters, pages ordered by
address, segment counts and the attributes a segment can test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import OperationalError, connection, transaction
from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat
from psycopg import errors

from consent.models import ConsentEvent, DMType, Suppression
from consent.selectors import granted, sendable
from mlm.db import row_exists
from mlm.models import SenderUnit
from recipients.models import (
    Audience,
    Category,
    ListMembership,
    Recipient,
    RecipientList,
    Segment,
)
from recipients.segments import MAX_TEXT, Matches

PAGE_SIZE = 50
MAX_TERMS = 5
# Chinese, Japanese and Korean names are written family name first and without a space (陳大文).
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def is_cjk(text: str) -> bool:
    """True if the text has Chinese, Japanese or Korean characters."""
    return bool(_CJK.search(text))


def _term(term: str) -> Q:
    """One word of a search: part of the address, the first or the last name, in any case.

    Each arm can use the trigram indexes of migration recipients 0002 on PostgreSQL.
    """
    match = Q(email__icontains=term) | Q(first_name__icontains=term) | Q(last_name__icontains=term)
    if is_cjk(term):
        for split in (1, 2):  # family names of one or two characters
            if len(term) > split:
                match |= Q(last_name__iexact=term[:split], first_name__istartswith=term[split:])
    return match


def recipient_search(
    *,
    unit: SenderUnit,
    q: str = "",
    recipient_list: RecipientList | None = None,
    category: str = "",
    status: str = "",
    dm_type: DMType | None = None,
) -> list[QuerySet[Recipient]]:
    """Recipients of `unit` that match every word of `q` and every filter given.

    The answer comes as disjoint querysets whose union it is: one, or with `dm_type` one per
    audience, each `consent.selectors.sendable` for that audience (I1 has one definition).
    `recipient_page` walks them side by side in address order, each along its own index.
    """
    if dm_type is None:
        parts = [Recipient.objects.for_unit(unit)]
    else:
        parts = [
            sendable(unit=unit, dm_type=dm_type, audience=audience)
            for audience in Audience.values
            if not category or category in Category.of_audience(audience)
        ]
    return [_narrow(p, q, recipient_list, category, status) for p in parts]


def _narrow(
    recipients: QuerySet[Recipient],
    q: str,
    recipient_list: RecipientList | None,
    category: str,
    status: str,
) -> QuerySet[Recipient]:
    for term in q.split()[:MAX_TERMS]:
        recipients = recipients.filter(_term(term))
    if recipient_list is not None:
        on_list = ListMembership.objects.filter(
            recipient_list=recipient_list, recipient=OuterRef("pk")
        )
        recipients = recipients.filter(Exists(on_list))
    if category:
        recipients = recipients.filter(category=category)
    if status:
        recipients = recipients.filter(status=status)
    return recipients


@dataclass(frozen=True)
class RecipientPage:
    """One page of recipients in address order.

    The cursors are recipient codes, so that no address appears in a URL, and no page counts
    the rows: on a million recipients a COUNT(*) per page view is the slow part.
    """

    rows: list[Recipient]
    next_after: uuid.UUID | None
    previous_before: uuid.UUID | None

    @property
    def has_other_pages(self) -> bool:
        return self.next_after is not None or self.previous_before is not None


def _cursor_email(unit: SenderUnit, cursor: str) -> str | None:
    try:
        code = uuid.UUID(cursor)
    except ValueError:
        return None
    recipients = Recipient.objects.for_unit(unit).filter(code=code)
    return recipients.values_list("email", flat=True).first()


# How long a page may walk the address index looking for matches before it asks PostgreSQL for
# all the matches sorted instead. Walking is fastest when matches are common; when they are rare
# or bunched (an address prefix, a DM type nobody of one audience was granted) it would read
# the whole unit, and PostgreSQL cannot tell the cases apart from its statistics.
WALK_BUDGET_MS = 300


def _walk(query: QuerySet[Recipient], order: str, limit: int) -> list[Recipient]:
    """The first rows in `order`, read along the (unit, address) index."""
    return list(query.order_by(order)[:limit])


def _sort(query: QuerySet[Recipient], order: str, limit: int) -> list[Recipient]:
    """The first rows in `order`, sorted after finding every match (no index gives this order)."""
    key = Concat("email", Value(""), output_field=CharField())
    return list(query.order_by(key.desc() if order.startswith("-") else key.asc())[:limit])


def _first_rows(query: QuerySet[Recipient], order: str, limit: int) -> list[Recipient]:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            (previous,) = cursor.fetchone()
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [f"{WALK_BUDGET_MS}ms"]
            )
            rows = _walk(query, order, limit)
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
            return rows
    except OperationalError as error:  # QueryCanceled; the savepoint's rollback undid set_config
        if not isinstance(error.__cause__, errors.QueryCanceled):
            raise
    return _sort(query, order, limit)


def _rows(parts: list[QuerySet[Recipient]], condition: Q, order: str, limit: int) -> list:
    """The first `limit` rows of the union of `parts` in `order` (each part reads `limit`)."""
    rows = [r for part in parts for r in _first_rows(part.filter(condition), order, limit)]
    rows.sort(key=lambda r: r.email, reverse=order.startswith("-"))
    return rows[:limit]


def recipient_page(
    parts: list[QuerySet[Recipient]],
    *,
    unit: SenderUnit,
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> RecipientPage:
    """The page of the recipients of `parts` after (or before) the recipient with that code.

    Reads one row more than it shows, to know whether another page follows.
    """
    before_email = _cursor_email(unit, before) if before else None
    if before_email is not None:
        rows = _rows(parts, Q(email__lt=before_email), "-email", size + 1)
        more = len(rows) > size
        rows = rows[:size][::-1]
        return RecipientPage(
            rows,
            next_after=rows[-1].code if rows else None,
            previous_before=rows[0].code if more else None,
        )
    after_email = _cursor_email(unit, after) if after else None
    condition = Q(email__gt=after_email) if after_email is not None else Q()
    rows = _rows(parts, condition, "email", size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return RecipientPage(
        rows,
        next_after=rows[-1].code if more else None,
        previous_before=rows[0].code if after_email is not None and rows else None,
    )


def lists_with_counts(unit: SenderUnit) -> QuerySet[RecipientList]:
    """The unit's lists, internal first, each with its number of members (one query)."""
    return (
        RecipientList.objects.for_unit(unit)
        .annotate(member_count=Count("memberships"))
        .order_by("-audience", "name")  # "internal" sorts after "external"
    )


@dataclass(frozen=True)
class DMTypeReach:
    """Of a list's members: how many agreed to a DM type, how many a mail of it would reach."""

    dm_type: DMType
    granted: int
    sendable: int


@dataclass(frozen=True)
class ListSummary:
    """A list's member total and, per current DM type of the unit, its reach."""

    members: int
    reach: list[DMTypeReach]


def list_summaries(unit: SenderUnit, lists: list[RecipientList]) -> dict[int, ListSummary]:
    """Member totals and consent per DM type of `lists`, by list id, in one query for all of
    them. "Would receive" is `consent.selectors.sendable` for the list's audience (I1), as a
    campaign to the list would count it; "granted" is a grant as the latest event."""
    dm_types = list(DMType.objects.for_unit(unit).filter(archived_at__isnull=True).order_by("name"))
    counts = {"members": Count("recipient")}
    for dm_type in dm_types:
        agreed = granted(unit=unit, dm_type=dm_type).values("pk")
        reachable = Q()
        for audience in Audience.values:
            allowed = sendable(unit=unit, dm_type=dm_type, audience=audience).values("pk")
            reachable |= Q(recipient_list__audience=audience, recipient__in=allowed)
        counts[f"granted_{dm_type.pk}"] = Count("recipient", filter=Q(recipient__in=agreed))
        counts[f"sendable_{dm_type.pk}"] = Count("recipient", filter=reachable)
    rows = {
        row["recipient_list"]: row
        for row in ListMembership.objects.filter(recipient_list__in=[rl.pk for rl in lists])
        .values("recipient_list")
        .order_by()
        .annotate(**counts)
    }
    empty = dict.fromkeys(counts, 0)
    summaries = {}
    for recipient_list in lists:
        row = rows.get(recipient_list.pk, empty)
        reach = [DMTypeReach(t, row[f"granted_{t.pk}"], row[f"sendable_{t.pk}"]) for t in dm_types]
        summaries[recipient_list.pk] = ListSummary(row["members"], reach)
    return summaries


def recipient_lists(recipient: Recipient) -> QuerySet[RecipientList]:
    """The lists a recipient is on."""
    return RecipientList.objects.filter(memberships__recipient=recipient).order_by("name")


def recipient_consent_events(recipient: Recipient) -> QuerySet[ConsentEvent]:
    """The recipient's consent ledger, newest first, with what each grant agreed to."""
    return (
        ConsentEvent.objects.filter(recipient=recipient)
        .select_related("dm_type", "notice")
        .order_by("-id")
    )


def recipient_suppressions(recipient: Recipient) -> QuerySet[Suppression]:
    """Suppressions that stop mail to this recipient: of its unit, or of every unit."""
    return Suppression.objects.filter(
        Q(unit=recipient.unit_id) | Q(unit__isnull=True), email_hash=recipient.email_hash
    ).order_by("created_at")


def recipient_is_suppressed(recipient: Recipient) -> bool:
    """Whether a suppression of its unit or of every unit stops mail to this recipient."""
    return row_exists(
        Suppression,
        "(unit_id = %s OR unit_id IS NULL) AND email_hash = %s",
        [recipient.unit_id, recipient.email_hash],
    )


# Segments ----------------------------------------------------------------------------------


def segment_narrow(
    recipients: QuerySet[Recipient], *, lists: Iterable[RecipientList | int], conditions: dict
) -> QuerySet[Recipient]:
    """`recipients` that are on any of `lists` and meet `conditions` (validated): one EXISTS and
    one boolean expression added to the same statement."""
    on_lists = ListMembership.objects.filter(
        recipient_list__in=list(lists), recipient=OuterRef("pk")
    )
    return recipients.filter(Exists(on_lists), Matches(conditions))


def segment_members(segment: Segment) -> QuerySet[Recipient]:
    """The segment's members now: recipients of its lists who meet its conditions, whatever
    their consent."""
    return segment_narrow(
        Recipient.objects.for_unit(segment.unit),
        lists=segment.lists.all(),
        conditions=segment.conditions,
    )


@dataclass(frozen=True)
class SegmentCount:
    """How many recipients a segment (saved or being written) holds, and how many of them a
    campaign of `dm_type` would reach now."""

    members: int
    dm_type: DMType | None = None
    sendable: int | None = None


def segment_count(
    *,
    unit: SenderUnit,
    audience: str,
    lists: list[RecipientList],
    conditions: dict,
    dm_type: DMType | None = None,
) -> SegmentCount:
    """Members of the lists meeting the conditions and, with a DM type, those `sendable`
    would let a campaign reach (I1 has one definition)."""
    if not lists:
        return SegmentCount(0, dm_type, 0 if dm_type else None)
    members = segment_narrow(Recipient.objects.for_unit(unit), lists=lists, conditions=conditions)
    reach = None
    if dm_type is not None:
        allowed = sendable(unit=unit, dm_type=dm_type, audience=audience)
        reach = segment_narrow(allowed, lists=lists, conditions=conditions).count()
    return SegmentCount(members.count(), dm_type, reach)


@dataclass(frozen=True)
class AttributeKey:
    """An attribute found in a unit's data: how many recipients have it, its common values."""

    key: str
    count: int
    values: list[tuple[str, int]]


ATTRIBUTE_SAMPLE = 20_000  # the latest recipients with attributes, read for the builder
ATTRIBUTE_KEYS = 40
ATTRIBUTE_VALUES = 8


def attribute_keys(unit: SenderUnit) -> list[AttributeKey]:
    """The attribute keys of the unit's latest recipients, most frequent first, each with its
    most common values: what the segment builder offers."""
    table = Recipient._meta.db_table
    # Only our own table name is interpolated; the unit and the limits are parameters.
    sql = f"""
        WITH sample AS (
            SELECT attributes FROM {table}
            WHERE unit_id = %s AND attributes <> '{{}}'::jsonb
            ORDER BY id DESC LIMIT %s
        )
        SELECT pair.key, pair.value, count(*)
        FROM sample, jsonb_each_text(sample.attributes) AS pair
        WHERE char_length(pair.key) <= %s AND char_length(pair.value) <= %s
        GROUP BY pair.key, pair.value
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [unit.pk, ATTRIBUTE_SAMPLE, MAX_TEXT, MAX_TEXT])
        rows = cursor.fetchall()
    by_key: dict[str, list[tuple[str, int]]] = {}
    for key, value, count in rows:
        by_key.setdefault(key, []).append((value, count))
    found = [
        AttributeKey(
            key,
            sum(n for _, n in values),
            sorted(values, key=lambda v: (-v[1], v[0]))[:ATTRIBUTE_VALUES],
        )
        for key, values in by_key.items()
    ]
    found.sort(key=lambda a: (-a.count, a.key))
    return found[:ATTRIBUTE_KEYS]
