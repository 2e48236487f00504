"""Render the demo newsletter for 20,000 recipients through the campaign pipeline.

The pipeline is what dispatch runs per recipient: sign the recipient's links, render subject,
HTML (CSS inlined once per campaign) and text part in the sandbox, and assemble the message with
its headers. The baseline renders the same template (body in layout) with a bare
`jinja2.Environment(autoescape=True)`. Both run in this process, interleaved in slices, so that a
noisy machine slows them alike; the ratio is the result.

No database: the campaign, unit and recipients are unsaved model instances.
Last line: `render: <msgs/s> msg/s (<ratio> of bare Jinja2)`.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
# Development mode only for its generated keys: nothing here is served or stored.
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

import jinja2  # noqa: E402

from campaigns.demo import DEMO_BODY, DEMO_LAYOUT, DEMO_SUBJECT  # noqa: E402
from campaigns.mail import CampaignMailer, campaign_variables, recipient_variables  # noqa: E402
from campaigns.models import Campaign, Layout, SenderIdentity  # noqa: E402
from campaigns.rendering import combine  # noqa: E402
from consent.models import DMType  # noqa: E402
from mlm.models import SenderUnit  # noqa: E402
from recipients.models import Recipient  # noqa: E402

RECIPIENTS = int(os.environ.get("BENCH_RECIPIENTS", "20000"))
SLICE = 500


def demo_campaign() -> Campaign:
    unit = SenderUnit(
        id=1,
        name="Faculty of Engineering",
        slug="engineering",
        postal_address="Faculty of Engineering\nExample University\n1 University Road, Hong Kong",
    )
    dm_type = DMType(id=1, unit=unit, key="newsletter", name="Newsletter")
    identity = SenderIdentity(
        id=1, unit=unit, name="Faculty of Engineering", email="news@engineering.example.edu"
    )
    layout = Layout(id=1, unit=unit, name="Faculty newsletter", html=DEMO_LAYOUT)
    return Campaign(
        id=1,
        unit=unit,
        name="Engineering news, spring",
        dm_type=dm_type,
        audience="external",
        identity=identity,
        layout=layout,
        subject=DEMO_SUBJECT,
        html_body=DEMO_BODY,
    )


def recipients(unit: SenderUnit, count: int) -> list[Recipient]:
    programmes = ["MEng Civil Engineering", "BEng Computer Engineering", "", "MSc Robotics"]
    return [
        Recipient(
            id=i + 1,
            code=uuid.uuid4(),
            unit=unit,
            email=f"person{i}@example.com",
            first_name="" if i % 7 == 0 else f"Person {i}",
            last_name="Chan",
            category="external",
            attributes={"programme": programmes[i % 4]} if programmes[i % 4] else {},
        )
        for i in range(count)
    ]


def main() -> None:
    campaign = demo_campaign()
    people = recipients(campaign.unit, RECIPIENTS)

    # No database: the unit's campaign settings are the defaults an unsaved unit has (a web
    # version link in every mail), not a stored row.
    from campaigns import selectors
    from campaigns.models import UnitCampaignSettings

    selectors.unit_settings = lambda unit: UnitCampaignSettings(unit=unit)

    started = time.perf_counter()
    mailer = CampaignMailer(campaign)
    compile_seconds = time.perf_counter() - started
    compiled = mailer.compiled
    assert compiled.inlined_once and compiled.text_derived_once, compiled.dynamic_reason

    bare = jinja2.Environment(autoescape=True).from_string(
        combine(campaign.html_body, campaign.layout.html)
    )
    shared = campaign_variables(campaign)
    links = {
        "unsubscribe_url": "https://mlm.example.edu/u/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG/",
        "preferences_url": "https://mlm.example.edu/p/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG/",
    }

    def run_bare(batch: list[Recipient]) -> int:
        size = 0
        for recipient in batch:
            size += len(bare.render({**shared, **recipient_variables(recipient), **links}))
        return size

    def run_pipeline(batch: list[Recipient]) -> int:
        size = 0
        for recipient in batch:
            parts, links = mailer.recipient_parts(recipient)
            size += len(parts.html) + len(parts.text) + len(links.one_click)
        return size

    sample, _ = mailer.recipient_parts(people[1])
    html_bytes = len(sample.html.encode())
    print(
        f"demo newsletter: {len(combine(DEMO_BODY, DEMO_LAYOUT)):,} characters of template, "
        f"{html_bytes:,} bytes of HTML per mail, text part {len(sample.text):,} characters"
    )
    print(f"compile once (templates, CSS inlining, text template): {compile_seconds * 1000:.1f} ms")

    run_bare(people[:200])  # warm up both
    run_pipeline(people[:200])
    bare_seconds = pipeline_seconds = 0.0
    for start in range(0, len(people), SLICE):
        batch = people[start : start + SLICE]
        t0 = time.perf_counter()
        run_bare(batch)
        t1 = time.perf_counter()
        run_pipeline(batch)
        t2 = time.perf_counter()
        bare_seconds += t1 - t0
        pipeline_seconds += t2 - t1

    bare_rate = len(people) / bare_seconds
    rate = len(people) / pipeline_seconds
    print(f"bare Jinja2 render: {bare_rate:,.0f} msg/s over {len(people):,} recipients")
    print(f"pipeline (links, subject, HTML, text, headers): {rate:,.0f} msg/s")
    print(f"render: {rate:.0f} msg/s ({rate / bare_rate:.2f} of bare Jinja2)")


if __name__ == "__main__":
    main()
