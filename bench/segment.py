"""Benchmark: count who a segment's campaign would reach among 1,000,000 recipients.

Uses the database of bench/audience.py (built by it when missing: one unit, 1,000,000
recipients with attributes, one list of every external recipient, the consent ledger). Saves a
segment of that list with three conditions through the service, as the builder does:

    year is a number between 2010 and 2015, city is one of Hong Kong / Kowloon, phone exists

then times, in the same process, the count the builder shows ("would receive": `sendable` for
one DM type narrowed by the segment, one statement) against `sendable` alone, and prints the
plan of the segment's count.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlm python bench/segment.py [--fresh]

The last line is `segment: <s> s for 1,000,000 recipients (<n> matching) = <r> of sendable
alone`, the seconds being the median of three warm runs and r the ratio of the medians.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audience  # bench/audience.py, next to this file

CONDITIONS = {
    "match": "all",
    "groups": [
        {
            "match": "all",
            "conditions": [
                {
                    "field": "attribute",
                    "key": "year",
                    "op": "number_range",
                    "value": [2010, 2015],
                },
                {
                    "field": "attribute",
                    "key": "city",
                    "op": "one_of",
                    "value": ["Hong Kong", "Kowloon"],
                },
                {"field": "attribute", "key": "phone", "op": "exists"},
            ],
        }
    ],
}


def _median_count(query, runs: int = 3) -> tuple[float, int]:
    """The median time of `runs` COUNTs after one that warms the cache, and the count."""
    times = []
    count = query.count()
    for _ in range(runs):
        started = time.perf_counter()
        count = query.count()
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def main() -> None:
    audience.ready_database("--fresh" in sys.argv[1:])
    from django.db import connection

    from consent.models import DMType
    from consent.selectors import sendable
    from mlm.db import queryset_sql
    from mlm.models import SenderUnit
    from recipients.models import Audience, RecipientList, Segment
    from recipients.segment_services import segment_create
    from recipients.selectors import segment_members, segment_narrow

    unit = SenderUnit.objects.get(slug="engineering")
    dm_type = DMType.objects.get(unit=unit, key="type5")
    friends = RecipientList.objects.get(unit=unit, name="Alumni and friends")
    Segment.objects.filter(unit=unit, name="Bench segment").delete()
    segment = segment_create(
        unit=unit, name="Bench segment", lists=[friends], conditions=CONDITIONS, by=None
    )

    alone = sendable(unit=unit, dm_type=dm_type, audience=Audience.EXTERNAL).order_by()
    narrowed = segment_narrow(alone, lists=[friends], conditions=segment.conditions)
    sql, params = queryset_sql(narrowed.values("pk"))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ({sql}) s", params)
        print("\n".join(row[0] for row in cursor.fetchall()))

    members = segment_members(segment).count()
    base, base_count = _median_count(alone)
    seconds, matching = _median_count(narrowed)
    print(f"segment members (any consent): {members:,}")
    print(f"sendable alone: {base:.2f} s ({base_count:,} sendable)")
    ratio = seconds / base
    print(
        f"segment: {seconds:.2f} s for {audience.RECIPIENTS:,} recipients ({matching:,} matching)"
        f" = {ratio:.2f} of sendable alone"
    )


if __name__ == "__main__":
    main()
