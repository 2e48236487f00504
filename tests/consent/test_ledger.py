"""The ledger is the truth (I4): the database refuses changes to consent events, and
`verify_consent` proves the subscriptions are the fold of the events."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from campaigns.units import unit_create
from consent.models import Channel, ConsentEvent, Subscription
from consent.selectors import subscription_mismatches
from consent.services import dm_type_create, grant, withdraw
from recipients.models import Category, Recipient, RecipientStatus
from recipients.services import recipient_upsert


@pytest.fixture
def ledger(world):
    """Two recipients with a few grants and withdrawals, one of them of all DM types."""
    events = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="Invitations.", by=None
    )
    news = dm_type_create(unit=world.unit, key="news", name="News", notice_text="News.", by=None)
    ann, _ = recipient_upsert(
        unit=world.unit, email="ann@partner.org", category=Category.EXTERNAL, by=None
    )
    ben, _ = recipient_upsert(
        unit=world.unit, email="ben@example.edu", category=Category.STAFF, by=None
    )
    grant(recipient=ann, dm_types=[events, news], channel=Channel.IMPORT, evidence="Form v1")
    withdraw(recipient=ann, dm_types=[news], channel=Channel.ONE_CLICK)
    grant(recipient=ben, dm_types=[news], channel=Channel.ADMIN, evidence="Asked at the desk")
    withdraw(recipient=ben, dm_types=None, channel=Channel.PREFERENCE_CENTRE)
    return {"events": events, "news": news, "ann": ann, "ben": ben}


def refused(sql: str, params=None) -> str:
    """Run `sql` in a savepoint and return the database's refusal."""
    with pytest.raises(DatabaseError) as refusal, transaction.atomic(), connection.cursor() as c:
        c.execute(sql, params)
    return str(refusal.value)


def test_it_refuses_update_of_a_consent_event(ledger):
    """I4: the trigger refuses UPDATE of the ledger, even of a single harmless column."""
    event = ConsentEvent.objects.filter(recipient=ledger["ann"]).first()
    message = refused("UPDATE consent_consentevent SET channel = 'admin' WHERE id = %s", [event.pk])
    assert "append-only: UPDATE refused" in message
    assert "append-only" in refused("UPDATE consent_consentevent SET user_agent = ''")


def test_it_refuses_delete_of_a_consent_event(ledger):
    """I4: the trigger refuses DELETE of the ledger."""
    assert "append-only: DELETE refused" in refused("DELETE FROM consent_consentevent")
    assert ConsentEvent.objects.count() == 5


def test_it_refuses_truncate_of_the_ledger(ledger):
    """I4: the trigger refuses TRUNCATE (the test-only maintenance flag switched off)."""
    message = refused(
        # Deferred foreign-key checks of this test's inserts are run first: TRUNCATE refuses
        # to run over pending trigger events, which would hide what is being tested.
        "SET LOCAL mlm.ledger_maintenance = 'off'; SET CONSTRAINTS ALL IMMEDIATE; "
        "TRUNCATE consent_consentevent CASCADE"
    )
    assert "append-only: TRUNCATE refused" in message
    assert ConsentEvent.objects.count() == 5


def test_it_allows_erasure_only_its_own_narrow_update(ledger):
    """I4 with I9: under the erasure flag only an erased recipient's IP address, user agent
    and evidence may be cleared; every other change and every DELETE is still refused."""
    ann = ledger["ann"]
    clear = (
        "SELECT set_config('mlm.erasure', 'on', true); "
        "UPDATE consent_consentevent SET ip_address = NULL, user_agent = '', "
        "evidence = CASE WHEN evidence = '' THEN '' ELSE '[erased]' END WHERE recipient_id = %s"
    )
    # Not erased: refused even under the flag.
    assert "append-only" in refused(clear, [ann.pk])
    Recipient.objects.filter(pk=ann.pk).update(status=RecipientStatus.ERASED)
    # Without the flag: refused.
    assert "append-only" in refused(
        "UPDATE consent_consentevent SET user_agent = '' WHERE recipient_id = %s", [ann.pk]
    )
    # Under the flag, anything beyond the three columns or another evidence: refused.
    narrow = ", ip_address = NULL, user_agent = '' WHERE recipient_id = %s"
    for change in ("action = 'grant'", "channel = 'admin'", "evidence = 'rewritten'"):
        sql = "SELECT set_config('mlm.erasure', 'on', true); UPDATE consent_consentevent SET "
        assert "append-only" in refused(sql + change + narrow, [ann.pk])
    assert "append-only: DELETE" in refused(
        "SELECT set_config('mlm.erasure', 'on', true); "
        "DELETE FROM consent_consentevent WHERE recipient_id = %s",
        [ann.pk],
    )
    # The one change erasure makes passes.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(clear, [ann.pk])
    assert set(ConsentEvent.objects.filter(recipient=ann).values_list("evidence", flat=True)) == {
        "[erased]",
        "",
    }


def test_it_reports_ok_on_a_clean_ledger(ledger):
    """I4: on a ledger written by the services the subscriptions are exactly its fold."""
    out = StringIO()
    call_command("verify_consent", stdout=out)
    assert out.getvalue().strip() == ("OK: 4 subscriptions match the fold of 5 consent events.")


def test_it_finds_a_subscription_corrupted_by_raw_sql(ledger):
    """I4: a subscription row changed behind the ledger's back is named, and the command
    fails."""
    ann, news = ledger["ann"], ledger["news"]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_subscription SET state = 'granted' "
            "WHERE recipient_id = %s AND dm_type_id = %s",
            [ann.pk, news.pk],
        )
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_consent", stdout=out)
    assert failure.value.returncode != 0
    assert "1 subscription(s) differ" in str(failure.value)
    report = out.getvalue()
    assert f"STATE: recipient {ann.pk} ({ann.code}), DM type {news.pk} (news)" in report
    assert "ledger says withdrawn" in report


def test_it_names_every_kind_of_mismatch(ledger):
    """I4: missing, extra, wrong-state, wrong-event and wrong-unit rows are each reported."""
    ann, ben, events, news = ledger["ann"], ledger["ben"], ledger["events"], ledger["news"]
    world_unit = ann.unit
    ann_events = Subscription.objects.get(recipient=ann, dm_type=events)
    ben_all = Subscription.objects.get(recipient=ben, dm_type=None)
    ben_news = Subscription.objects.get(recipient=ben, dm_type=news)
    elsewhere = unit_create(name="Elsewhere", slug="elsewhere", postal_address="x", by=None)
    Subscription.objects.filter(recipient=ann, dm_type=news).delete()  # missing
    Subscription.objects.create(  # extra: ben never had an event for events
        unit=world_unit, recipient=ben, dm_type=events, state="granted", event=ben_news.event
    )
    Subscription.objects.filter(pk=ben_all.pk).update(event=ben_news.event)  # event
    Subscription.objects.filter(pk=ann_events.pk).update(unit=elsewhere)  # unit

    found = {(m.kind, m.recipient_id, m.dm_type_id) for m in subscription_mismatches()}

    assert found == {
        ("missing", ann.pk, news.pk),
        ("extra", ben.pk, events.pk),
        ("event", ben.pk, None),
        ("unit", ann.pk, events.pk),
    }


def test_the_events_returned_are_the_rows_written_and_folded(ledger):
    """I4: `grant` and `withdraw` return the ledger's own rows (ids in the order of the DM
    types, each grant naming the notice shown), and a second change of the same scope moves
    the fold's one row to the newer event instead of adding a row."""
    ann, ben, news, events = ledger["ann"], ledger["ben"], ledger["news"], ledger["events"]
    granted = grant(recipient=ann, dm_types=[news, events], channel=Channel.ADMIN, evidence="Desk")
    assert [e.dm_type for e in granted] == [news, events]
    assert granted[0].pk < granted[1].pk
    for event in granted:
        stored = ConsentEvent.objects.get(pk=event.pk)
        assert (stored.action, stored.dm_type, stored.notice, stored.created_at) == (
            event.action,
            event.dm_type,
            event.dm_type.current_notice,
            event.created_at,
        )
    [again] = withdraw(recipient=ben, dm_types=None, channel=Channel.ADMIN, evidence="Called")
    whole_unit = Subscription.objects.filter(recipient=ben, dm_type__isnull=True)
    assert whole_unit.count() == 1
    assert whole_unit.get().event_id == again.pk
    out = StringIO()
    call_command("verify_consent", stdout=out)
    assert out.getvalue().startswith("OK:")
