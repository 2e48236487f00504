"""Recovery and finishing (DESIGN §5, step 5; I7, I10): rows whose worker died become in doubt
after their lease, stalled campaigns get their batches again, and a campaign with no open row is
marked sent. In-doubt rows are never re-sent without a person's decision
(campaigns.services.status.deliveries_send_in_doubt).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.services.status import TransitionError, campaign_mark_sent

log = logging.getLogger(__name__)

D = DeliveryStatus
OPEN_STATUSES = (D.QUEUED, D.DEFERRED, D.SENDING)  # a campaign with none of these is done


def campaign_finish_if_done(*, campaign_id: int) -> bool:
    """Sending → sent when no delivery is queued, deferred or being sent (in-doubt rows wait for
    a person). Answers whether this call finished it."""
    if Delivery.objects.filter(campaign_id=campaign_id, status__in=OPEN_STATUSES).exists():
        return False
    campaign = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).first()
    if campaign is None:
        return False
    try:
        campaign_mark_sent(campaign=campaign)
    except TransitionError:  # another worker finished it, or someone paused it just now
        return False
    log.info("campaign %s sent", campaign.code)
    return True


# --- recovery (I7) ----------------------------------------------------------------------------


@transaction.atomic
def deliveries_recover(*, now=None) -> int:
    """Rows left `sending` past their lease (their worker died) become `in_doubt`: they may have
    gone out, so they are never re-sent without a person's decision (I7). Then stalled campaigns
    get their batch tasks again (lost broker messages) and finished ones are marked sent."""
    now = now or timezone.now()
    lost = Delivery.objects.filter(status=D.SENDING, lease_until__lt=now).update(
        status=D.IN_DOUBT, lease_until=None, finished_at=now, updated_at=now
    )
    if lost:
        log.warning("%s deliveries in doubt: their worker's lease ran out", lost)
    sending = Campaign.objects.filter(status=CampaignStatus.SENDING).values_list("pk", flat=True)
    for campaign_id in sending:
        rows = Delivery.objects.filter(campaign_id=campaign_id)
        if not rows.filter(status__in=OPEN_STATUSES).exists():
            transaction.on_commit(lambda cid=campaign_id: campaign_finish_if_done(campaign_id=cid))
        elif (
            not rows.filter(status=D.SENDING).exists()
            and rows.filter(
                Q(status=D.QUEUED)
                | Q(status=D.DEFERRED, next_attempt_at__lte=now + timedelta(seconds=1))
            ).exists()
        ):
            enqueue.batches_fan_out(campaign_id=campaign_id)
    return lost
