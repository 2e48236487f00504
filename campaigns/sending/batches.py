"""One batch of a sending campaign (DESIGN §5, step 3; I1, I6, I7): claim, re-check, send, record.

`batch_send` is what one batch task does: claim a few `queued` (or due `deferred`) rows with
`FOR UPDATE SKIP LOCKED`, mark them `sending` with a lease, re-check `sendable` for all of them in
one query (a withdrawal that arrived mid-campaign wins: I6), render, sign (not on an ESP's path:
it signs), hand each to the unit's mail backend over one connection (campaigns.sending.transport),
and record `sent` (with the ESP's message id), `deferred` or `failed`. The claim is the
idempotency: a task delivered twice claims other rows, or none, and never sends a row twice (I7).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import Case, CharField, F, Min, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from campaigns.mail import CampaignMessages
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from campaigns.sandbox import RenderError
from campaigns.sending.recovery import campaign_finish_if_done
from campaigns.sending.transport import (
    PERMANENT,
    backend,
    classify,
    connection_close,
    is_connect_error,
    provider_message_id,
    send_one,
    signs,
    throttle_wait,
)
from campaigns.services.status import TransitionError, campaign_pause
from consent.selectors import sendable
from mlm.mail.headers import HeaderInjection

log = logging.getLogger(__name__)

D = DeliveryStatus


# --- batches (I6, I7) ----------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one batch did; `claimed` 0 means there was nothing to claim (or the campaign is not
    sending)."""

    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retry_in: float | None = None  # nothing due now, but deferred rows are due in this many s
    finished: bool = False
    paused: bool = False
    errors: list[str] = field(default_factory=list)


@transaction.atomic
def batch_claim(*, campaign_id: int, size: int | None = None) -> list[int]:
    """Claim up to `size` due rows of a sending campaign: `sending`, leased, one more attempt.

    `FOR UPDATE SKIP LOCKED` lets any number of workers claim side by side without waiting; the
    UPDATE is conditional on the status, so a row is claimed by one batch only (I7).
    """
    campaign = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).first()
    if campaign is None:  # paused, cancelled, finished: take effect between batches
        return []
    now = timezone.now()
    ids = list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(campaign_id=campaign_id, status__in=[D.QUEUED, D.DEFERRED])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("id")
        .values_list("id", flat=True)[: size or settings.MLM_DISPATCH_BATCH_SIZE]
    )
    if not ids:
        return []
    updated = Delivery.objects.filter(pk__in=ids, status__in=[D.QUEUED, D.DEFERRED]).update(
        status=D.SENDING,
        lease_until=now + timedelta(seconds=settings.MLM_DISPATCH_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        claimed_at=now,
        next_attempt_at=None,
        updated_at=now,
    )
    if updated != len(ids):  # cannot happen under the row locks; refuse rather than guess
        raise RuntimeError(f"claimed {updated} of {len(ids)} locked deliveries")
    return ids


def batch_recheck(*, campaign: Campaign, ids: list[int]) -> list[Delivery]:
    """The claimed rows whose recipient is still sendable, by ONE query on `sendable` (I1); the
    others become `skipped`, reason withdrawn during sending (I6)."""
    rows = list(
        Delivery.objects.filter(pk__in=ids, status=D.SENDING)
        .select_related("recipient")
        .order_by("id")
    )
    allowed = set(
        sendable(unit=campaign.unit, dm_type=campaign.dm_type, audience=campaign.audience)
        .filter(pk__in=[row.recipient_id for row in rows])
        .values_list("pk", flat=True)
    )
    refused = [row.pk for row in rows if row.recipient_id not in allowed]
    if refused:
        now = timezone.now()
        Delivery.objects.filter(pk__in=refused, status=D.SENDING).update(
            status=D.SKIPPED,
            reason=SkipReason.WITHDRAWN_DURING_SENDING,
            lease_until=None,
            finished_at=now,
            updated_at=now,
        )
    return [row for row in rows if row.recipient_id in allowed]


_messages_cache: OrderedDict[tuple[int, int, bool], CampaignMessages] = OrderedDict()


def campaign_messages(campaign: Campaign, backend_path: str | None = None) -> CampaignMessages:
    """The campaign's compiled messages for its unit's backend (signed or not), built once per
    worker process and campaign revision."""
    sign = signs(backend_path or backend(campaign.unit))
    key = (campaign.pk, campaign.revision, sign)
    found = _messages_cache.get(key)
    if found is None:
        found = _messages_cache[key] = CampaignMessages(campaign, sign=sign)
        while len(_messages_cache) > 8:
            _messages_cache.popitem(last=False)
    return found


def batch_send(*, campaign_id: int) -> BatchResult:
    """Claim one batch of the campaign and send it (see the module docstring); the one service
    the batch task calls."""
    result = BatchResult()
    ids = batch_claim(campaign_id=campaign_id)
    if not ids:
        return _nothing_claimed(campaign_id, result)
    result.claimed = len(ids)
    campaign = Campaign.objects.select_related("unit", "dm_type", "identity", "layout").get(
        pk=campaign_id
    )
    rows = batch_recheck(campaign=campaign, ids=ids)
    result.skipped = len(ids) - len(rows)
    sent: list[int] = []
    provider_ids: dict[int, str] = {}  # delivery id -> the ESP's message id
    deferred: list[tuple[Delivery, str, bool]] = []  # (row, reply, attempt counted)
    failed: list[tuple[Delivery, str]] = []
    conn = None
    try:
        path = backend(campaign.unit)
        messages = campaign_messages(campaign, path)
        if rows:
            conn = get_connection(path, fail_silently=False)
    except RenderError as error:  # the template broke: permanent for every row
        failed = [(row, f"not built: {error}") for row in rows]
        rows = []
    except (ImproperlyConfigured, ImportError) as error:
        # No backend to hand mail to (not configured, its library or API key missing): like a
        # server nobody answers, the batch waits and no attempt is counted; failures in a row
        # pause the campaign.
        log.error("campaign %s: mail backend not usable: %s", campaign.code, error)
        reply = f"mail backend not usable: {type(error).__name__}: {error}"[:500]
        deferred = [(row, reply, False) for row in rows]
        rows = []
    on_connection = 0  # mails the server took or refused on the current connection
    for index, row in enumerate(rows):
        try:
            message = messages.build(row.recipient, delivery_id=row.pk)
        except (RenderError, HeaderInjection, ValueError) as error:
            failed.append((row, f"not built: {error}"[:500]))
            continue
        try:
            throttle_wait(campaign.unit_id, path)
            send_one(conn, message, row.recipient.email.rpartition("@")[2].lower())
        except Exception as error:
            kind, reply = classify(error)
            if kind == PERMANENT:
                on_connection += 1
                failed.append((row, reply))
                continue
            fresh, on_connection = on_connection == 0, 0
            connection_close(conn)
            if fresh and is_connect_error(error):
                # Nobody is answering: the rest of the batch waits too, and as nothing was
                # handed over, no attempt is counted.
                deferred.extend((other, reply, False) for other in rows[index:])
                break
            deferred.append((row, reply, True))
            continue
        on_connection += 1
        sent.append(row.pk)
        if found := provider_message_id(message):
            provider_ids[row.pk] = found
    if conn is not None:
        connection_close(conn)
    _record(campaign, sent=sent, deferred=deferred, failed=failed, provider_ids=provider_ids)
    result.sent, result.deferred = len(sent), len(deferred)
    result.failed = len(failed)
    result.errors = sorted({reply for _, reply, *_ in (*deferred, *failed)})[:5]
    result.paused = _count_failures(campaign, sent=len(sent), transient=len(deferred))
    return result


@transaction.atomic
def _record(
    campaign: Campaign,
    *,
    sent: list[int],
    deferred: list[tuple[Delivery, str, bool]],
    failed: list[tuple[Delivery, str]],
    provider_ids: dict[int, str] | None = None,
) -> None:
    """Write the batch's outcomes; each UPDATE only touches rows still `sending` (a row whose
    lease ran out meanwhile stays `in_doubt`: it may or may not have gone out)."""
    now = timezone.now()
    domain = campaign.identity.email.rpartition("@")[2].lower()
    if sent:
        extra = {}
        if provider_ids:  # the ESP's ids, which its tracking events name
            extra["provider_message_id"] = Case(
                *(When(pk=pk, then=Value(found)) for pk, found in provider_ids.items()),
                default=Value(""),
                output_field=CharField(),
            )
        Delivery.objects.filter(pk__in=sent, status=D.SENDING).update(
            status=D.SENT,
            sent_at=now,
            finished_at=now,
            lease_until=None,
            reply="",
            updated_at=now,
            # The Message-ID is the delivery's own (message_id_for): one UPDATE writes them all.
            message_id=_message_id_sql(campaign, domain),
            **extra,
        )
    for row, reply in failed:
        Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
            status=D.FAILED, reply=reply, finished_at=now, lease_until=None, updated_at=now
        )
    limit = settings.MLM_DISPATCH_MAX_ATTEMPTS
    for row, reply, counted in deferred:
        attempts = row.attempts if counted else row.attempts - 1  # the claim counted one
        if counted and attempts >= limit:
            Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
                status=D.FAILED, reply=reply, finished_at=now, lease_until=None, updated_at=now
            )
            continue
        delay = settings.MLM_DISPATCH_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
        Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
            status=D.DEFERRED,
            reply=reply,
            attempts=Greatest(F("attempts") - (0 if counted else 1), 0),
            next_attempt_at=now + timedelta(seconds=delay),
            lease_until=None,
            updated_at=now,
        )


def _message_id_sql(campaign: Campaign, domain: str):
    from django.db.models.functions import Cast, Concat

    return Concat(
        Value("<"),
        Cast("id", output_field=CharField()),
        Value(f".{campaign.code.hex[:16]}@{domain}>"),
        output_field=CharField(),
    )


def _count_failures(campaign: Campaign, *, sent: int, transient: int) -> bool:
    """Count transient failures in a row; past the limit the campaign pauses itself. Answers
    whether it paused now."""
    if sent:
        Campaign.objects.filter(pk=campaign.pk, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )
    if not transient or sent:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(
        consecutive_failures=F("consecutive_failures") + transient
    )
    limit = settings.MLM_DISPATCH_PAUSE_AFTER_FAILURES
    failures = Campaign.objects.filter(pk=campaign.pk).values_list(
        "consecutive_failures", flat=True
    )[0]
    if not limit or failures < limit:
        return False
    try:
        campaign_pause(
            campaign=campaign,
            by=None,
            reason=f"{failures} sending failures in a row; the last: see the failed deliveries",
        )
    except TransitionError:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(consecutive_failures=0)
    log.warning("campaign %s paused itself after %s failures in a row", campaign.code, failures)
    return True


def _nothing_claimed(campaign_id: int, result: BatchResult) -> BatchResult:
    """No row was due: finish the campaign if nothing is left, else say when deferred rows are
    due (the task comes back then)."""
    if campaign_finish_if_done(campaign_id=campaign_id):
        result.finished = True
        return result
    status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status != CampaignStatus.SENDING:
        return result
    due = Delivery.objects.filter(campaign_id=campaign_id, status=D.DEFERRED).aggregate(
        at=Min("next_attempt_at")
    )["at"]
    if due is not None:
        result.retry_in = max((due - timezone.now()).total_seconds(), 0.0) + 0.05
    return result
