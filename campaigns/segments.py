"""A campaign that targets a segment: the copy of the segment kept when sending starts, which
the snapshot resolves and the report shows, and the live segment before that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaigns.models import Campaign
from recipients.models import Segment
from recipients.segments import describe


def segment_copy(segment: Segment) -> dict[str, Any]:
    """What a campaign keeps of its segment: name, audience, lists and conditions as they are."""
    lists = segment.lists.order_by("name")
    return {
        "code": str(segment.code),
        "name": segment.name,
        "audience": segment.audience,
        "lists": [{"id": rl.pk, "code": str(rl.code), "name": rl.name} for rl in lists],
        "conditions": segment.conditions,
    }


def campaign_segment_freeze(*, campaign: Campaign) -> None:
    """Keep the campaign's segment as it is now, once: later edits of the segment change
    neither the snapshot nor the report of a campaign that has started."""
    if campaign.segment_id is None or campaign.segment_sent:
        return
    copy = segment_copy(campaign.segment)
    Campaign.objects.filter(pk=campaign.pk).update(segment_sent=copy)
    campaign.segment_sent = copy


def campaign_segment(campaign: Campaign) -> dict[str, Any] | None:
    """The segment the campaign targets: its kept copy once sending started, else the segment
    as it is now (the same shape as `segment_copy`); None for a campaign of lists."""
    if campaign.segment_sent:
        return campaign.segment_sent
    if campaign.segment_id is None:
        return None
    return segment_copy(campaign.segment)


@dataclass(frozen=True)
class SegmentShown:
    """A campaign's segment for the campaign and report pages."""

    name: str
    lists: list[str]
    conditions: list[str]
    kept: bool  # the copy kept when sending started, not the segment of today


def segment_shown(campaign: Campaign) -> SegmentShown | None:
    """The campaign's segment in words, or None for a campaign of lists."""
    target = campaign_segment(campaign)
    if target is None:
        return None
    return SegmentShown(
        name=target["name"],
        lists=[rl["name"] for rl in target["lists"]],
        conditions=describe(target["conditions"]),
        kept=bool(campaign.segment_sent),
    )
