"""The starter layout of every new unit: a first draft with only a subject and a body passes
every content check, with no layout written by hand."""

from __future__ import annotations

from django.urls import reverse

from campaigns.checks import run_checks
from campaigns.models import Layout
from campaigns.starter import STARTER_LAYOUT_NAME
from campaigns.units import unit_create
from mlm.models import Role
from mlm.services import membership_set
from recipients.models import Audience
from tests.campaigns import factories
from tests.campaigns.test_checks import CHECK_KEYS


def test_it_gives_every_new_unit_the_starter_layout(db):
    unit = unit_create(
        name="School of Design", slug="design", postal_address="1 Design Road", by=None
    )
    assert list(Layout.objects.for_unit(unit).values_list("name", flat=True)) == [
        STARTER_LAYOUT_NAME
    ]


def test_a_first_draft_with_a_subject_and_a_short_body_passes_every_check(world):
    """I5: the starter footer links to unsubscribe and the preference centre, in both languages."""
    unit = unit_create(
        name="School of Design",
        slug="design",
        postal_address="School of Design\nExample University\n2 Design Road, Hong Kong",
        by=None,
    )
    membership_set(unit=unit, user=world.bob, role=Role.EDITOR, by=None)
    campaign = factories.campaign(
        world,
        unit=unit,
        dm_type=factories.dm_type(unit),
        lists=[factories.recipient_list(unit, Audience.EXTERNAL)],
        identity=factories.identity(unit),
        subject="Open day on Saturday",
        html_body="<p>Come and see our students' work.</p>",
        layout=Layout.objects.for_unit(unit).get(name=STARTER_LAYOUT_NAME),
    )
    report = run_checks(campaign)
    assert {r.key for r in report.results} == CHECK_KEYS
    assert report.passed, [(r.key, r.message) for r in report.failing]


def test_a_new_draft_starts_in_the_starter_layout(world, client_for):
    starter = Layout.objects.for_unit(world.unit).get(name=STARTER_LAYOUT_NAME)
    page = client_for(world.bob).get(reverse("campaign_create", args=[world.unit.slug]))
    assert f'<option value="{starter.pk}" selected>' in page.content.decode()
