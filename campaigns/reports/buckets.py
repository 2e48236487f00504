"""Time buckets of the reports: hours, days, weeks or months in a unit's local time, chosen by
the span they cover and named as PostgreSQL's date_trunc names them, and rates in percent."""

from __future__ import annotations

from datetime import datetime, timedelta


def rate(part: int, whole: int) -> float | None:
    """`part` as a percentage of `whole`; None when there is no whole to speak of."""
    return 100.0 * part / whole if whole else None


def choose_granularity(start: datetime, end: datetime) -> str:
    """Hours for three days, days for three months, weeks for three years, then months."""
    span = end - start
    if span <= timedelta(hours=72):
        return "hour"
    if span <= timedelta(days=92):
        return "day"
    if span <= timedelta(weeks=156):
        return "week"
    return "month"


def truncate(moment: datetime, granularity: str) -> datetime:
    """What PostgreSQL's date_trunc makes of a local (naive) time."""
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return moment
    moment = moment.replace(hour=0)
    if granularity == "day":
        return moment
    if granularity == "week":
        return moment - timedelta(days=moment.weekday())
    return moment.replace(day=1)


def next_bucket(moment: datetime, granularity: str) -> datetime:
    """The start of the bucket after the one starting at `moment`."""
    if granularity == "hour":
        return moment + timedelta(hours=1)
    if granularity == "day":
        return moment + timedelta(days=1)
    if granularity == "week":
        return moment + timedelta(weeks=1)
    return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)


def buckets_between(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Every bucket from the one holding `start` to the one holding `end` (local, naive)."""
    found, moment, last = [], truncate(start, granularity), truncate(end, granularity)
    while moment <= last:
        found.append(moment)
        moment = next_bucket(moment, granularity)
    return found


def bucket_label(moment: datetime, granularity: str) -> str:
    """A bucket as the data tables name it, in full."""
    if granularity == "hour":
        return f"{moment:%Y-%m-%d %H:00}"
    if granularity == "month":
        return f"{moment:%Y-%m}"
    if granularity == "week":
        return f"week of {moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d}"


def bucket_tick(moment: datetime, granularity: str) -> str:
    """A bucket as the chart's axis names it, short."""
    if granularity == "hour":
        return f"{moment:%d %H:00}"
    if granularity == "month":
        return f"{moment:%Y-%m}"
    return f"{moment:%m-%d}"
