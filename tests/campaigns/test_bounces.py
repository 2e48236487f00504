"""Bounce messages: RFC 3464 delivery status notifications (as Postfix and Exim write them) read
from a Maildir or an IMAP folder; hard bounces suppress the address for every unit, soft ones are
recorded; other mail is left alone with a warning."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.bounces import ImapSource, NotADeliveryReport, bounces_process, dsn_feedback
from campaigns.models import (
    BounceKind,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
)
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from consent.models import Suppression, SuppressionReason
from recipients.models import RecipientStatus
from tests.campaigns import factories
from tests.campaigns.imap_server import IMAPServer

FIXTURES = Path(__file__).parent / "dsn"
MESSAGE_ID = "<17.0123456789abcdef@engineering.example.edu>"


def dsn(name: str, *, recipient: str = "gone@example.org", message_id: str = MESSAGE_ID) -> bytes:
    """A fixture message with the bounced recipient and the original Message-ID filled in."""
    text = (FIXTURES / name).read_text()
    return text.replace("{{RECIPIENT}}", recipient).replace("{{MESSAGE_ID}}", message_id).encode()


# --- parsing --------------------------------------------------------------------------------------


def test_it_reads_a_postfix_hard_bounce():
    (event,) = dsn_feedback(dsn("postfix_bounce.eml"))
    assert event.source == "dsn"
    assert event.kind == EventKind.BOUNCED
    assert event.bounce_kind == BounceKind.HARD
    assert event.email == "gone@example.org"
    assert event.message_id == MESSAGE_ID  # from the returned message (message/rfc822)
    assert event.description == (
        "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual "
        "mailbox table"
    )
    assert event.occurred_at == datetime(2025, 6, 2, 1, 0, 5, tzinfo=UTC)
    assert len(event.event_key) == 64


def test_it_reads_a_postfix_delay_warning_as_a_soft_bounce():
    (event,) = dsn_feedback(dsn("postfix_delay.eml", recipient="full@example.net"))
    assert event.bounce_kind == BounceKind.SOFT
    assert event.email == "full@example.net"
    assert event.message_id == MESSAGE_ID  # from the returned headers (text/rfc822-headers)
    assert event.description == "452 4.2.2 <full@example.net>: Mailbox full"


def test_it_reads_each_recipient_of_a_report_and_skips_the_delivered():
    """Exim: a 4.x.x failure (retry time exceeded) is soft; a failure without Status takes the
    class of its diagnostic's reply code; a delivered recipient is no bounce."""
    events = dsn_feedback(dsn("exim_two_recipients.eml", recipient="full@example.com"))
    assert [(e.email, e.bounce_kind) for e in events] == [
        ("full@example.com", BounceKind.SOFT),
        ("nobody@example.com", BounceKind.HARD),
    ]
    assert events[0].description == "mailbox is full: retry timeout exceeded"
    assert events[1].description == "550 No such user here"
    assert len({e.event_key for e in events}) == 2
    assert {e.message_id for e in events} == {MESSAGE_ID}


def test_the_same_report_read_twice_has_the_same_event_keys():
    """The event key is a digest of the report's Message-ID and the recipient: a report read
    again is recognised; another report about the same message is another event."""
    first = dsn_feedback(dsn("postfix_bounce.eml"))
    assert dsn_feedback(dsn("postfix_bounce.eml")) == first
    other = dsn("postfix_bounce.eml").replace(b"4F1B2C0A12@relay", b"4F1B2C0A13@relay")
    assert dsn_feedback(other)[0].event_key != first[0].event_key


def test_it_refuses_a_message_that_is_not_a_delivery_report():
    with pytest.raises(NotADeliveryReport, match="text/plain"):
        dsn_feedback(dsn("out_of_office.eml"))
    complaint = dsn("postfix_bounce.eml").replace(
        b"report-type=delivery-status", b"report-type=feedback-report"
    )
    with pytest.raises(NotADeliveryReport):
        dsn_feedback(complaint)


# --- recording, from a Maildir ------------------------------------------------------------------


def _sent(world, *emails: str) -> dict[str, Delivery]:
    """The demo campaign sent (locmem backend) to `emails`; their deliveries by address."""
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Bounce test")
    for email in emails:
        factories.member(target, email, granted=news)
    campaign = factories.campaign(world, lists=[target])
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    assert batch_send(campaign_id=campaign.pk).sent == len(emails)
    rows = Delivery.objects.filter(campaign=campaign).select_related("recipient")
    return {row.recipient.email: row for row in rows}


@pytest.fixture
def maildir(tmp_path) -> Path:
    path = tmp_path / "bounces"
    mailbox.Maildir(path, create=True)
    return path


def _process(path: Path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("process_bounces", maildir=str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _seen(path: Path, key: str) -> bool:
    message = mailbox.Maildir(path, create=False).get_message(key)
    return message.get_subdir() == "cur" and "S" in message.get_flags()


def test_a_hard_bounce_suppresses_the_address_everywhere_and_marks_the_recipient(world, maildir):
    """I1: after a hard bounce the address is suppressed for every unit and the recipient is
    bounced, so no later campaign of any unit mails it."""
    rows = _sent(world, "gone@example.org", "ok@example.org")
    gone = rows["gone@example.org"]
    key = mailbox.Maildir(maildir).add(
        dsn("postfix_bounce.eml", recipient="gone@example.org", message_id=gone.message_id)
    )
    out, err = _process(maildir)
    assert "1 delivery reports with 1 bounces (1 new" in out and err == ""
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.bounce_kind, event.source) == ("bounced", "hard", "dsn")
    assert event.delivery_id == gone.pk and event.campaign_id == gone.campaign_id
    assert "5.1.1" in event.description
    gone.recipient.refresh_from_db()
    assert gone.recipient.status == RecipientStatus.BOUNCED
    assert Suppression.objects.filter(
        unit__isnull=True, email_hash=gone.email_hash, reason=SuppressionReason.HARD_BOUNCE
    ).exists()
    ok = rows["ok@example.org"].recipient
    ok.refresh_from_db()
    assert ok.status == RecipientStatus.ACTIVE
    assert not Suppression.objects.filter(email_hash=ok.email_hash).exists()
    assert _seen(maildir, key)


def test_a_soft_bounce_is_recorded_and_nothing_more(world, maildir):
    rows = _sent(world, "full@example.net")
    row = rows["full@example.net"]
    key = mailbox.Maildir(maildir).add(
        dsn("postfix_delay.eml", recipient="full@example.net", message_id=row.message_id)
    )
    _process(maildir)
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.bounce_kind, event.delivery_id) == ("bounced", "soft", row.pk)
    row.recipient.refresh_from_db()
    assert row.recipient.status == RecipientStatus.ACTIVE
    assert not Suppression.objects.exists()
    assert Delivery.objects.get(pk=row.pk).status == DeliveryStatus.SENT  # the ledger stands
    assert _seen(maildir, key)


def test_other_mail_in_the_folder_is_left_alone_with_a_warning(world, maildir):
    rows = _sent(world, "chris@example.org")
    box = mailbox.Maildir(maildir)
    key = box.add(
        dsn(
            "out_of_office.eml",
            recipient="chris@example.org",
            message_id=rows["chris@example.org"].message_id,
        )
    )
    before = (maildir / "new" / key).read_bytes()
    out, err = _process(maildir)
    assert f"left message {key} alone: not a delivery status notification" in err
    assert "1 other messages left unread" in out
    assert (maildir / "new" / key).read_bytes() == before  # not moved, not flagged
    assert not DeliveryEvent.objects.exists()
    assert key in _process(maildir)[1]  # still waiting for a person


def test_a_report_read_again_changes_nothing(world, maildir):
    """I4: an event is stored once; a report marked unread by hand and read again is a duplicate
    with no second effect."""
    rows = _sent(world, "gone@example.org")
    raw = dsn("postfix_bounce.eml", message_id=rows["gone@example.org"].message_id)
    box = mailbox.Maildir(maildir)
    box.add(raw)
    _process(maildir)
    box.add(raw)  # the same report delivered twice
    out, _ = _process(maildir)
    assert "(0 new, 1 seen before" in out
    assert DeliveryEvent.objects.count() == 1
    assert Suppression.objects.count() == 1
    assert _process(maildir)[0].startswith(f"Maildir {maildir}: 0 read")


def test_a_bounce_for_a_message_we_did_not_send_is_kept_without_effect(world, maildir):
    mailbox.Maildir(maildir).add(dsn("postfix_bounce.eml", message_id="<other@example.com>"))
    out, _ = _process(maildir)
    assert "1 not ours" in out
    event = DeliveryEvent.objects.get()
    assert event.delivery_id is None and event.bounce_kind == "hard"
    assert not Suppression.objects.exists()


def test_the_command_says_what_it_needs(tmp_path):
    with pytest.raises(CommandError, match="either --maildir"):
        call_command("process_bounces")
    with pytest.raises(CommandError, match="No Maildir"):
        call_command("process_bounces", maildir=str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="MLM_BOUNCE_IMAP_PASSWORD"):
        call_command("process_bounces", imap_host="127.0.0.1", imap_user="bounces")


# --- from an IMAP folder ------------------------------------------------------------------------


@pytest.fixture
def imap(tmp_path) -> Iterator[IMAPServer]:
    server = IMAPServer(tmp_path, user="bounces", password="s3cret").start()
    try:
        yield server
    finally:
        server.stop()


def _imap_source(server: IMAPServer, **kwargs) -> ImapSource:
    return ImapSource(
        host="127.0.0.1",
        port=server.port,
        user="bounces",
        password="s3cret",
        ssl_context=server.client_context(),
        **kwargs,
    )


def test_it_reads_bounces_over_imap_with_tls_and_flags_them_seen(world, imap):
    rows = _sent(world, "gone@example.org", "full@example.net")
    hard = imap.add(dsn("postfix_bounce.eml", message_id=rows["gone@example.org"].message_id))
    soft = imap.add(
        dsn(
            "postfix_delay.eml",
            recipient="full@example.net",
            message_id=rows["full@example.net"].message_id,
        )
    )
    other = imap.add(dsn("out_of_office.eml"))
    old = imap.add(dsn("postfix_bounce.eml", recipient="old@example.org"), flags={"\\Seen"})
    source = _imap_source(imap)
    try:
        run = bounces_process(source=source)
    finally:
        source.close()
    assert (run.read, run.reports, run.stored, run.left) == (3, 2, 2, 1)
    assert imap.messages[hard].flags == imap.messages[soft].flags == {"\\Seen"}
    assert imap.messages[other].flags == set()  # BODY.PEEK: left unread
    assert all("BODY.PEEK[]" in c for c in imap.commands if c.startswith("UID FETCH"))
    assert f"UID FETCH {old} (BODY.PEEK[])" not in imap.commands
    kinds = dict(DeliveryEvent.objects.values_list("delivery__recipient__email", "bounce_kind"))
    assert kinds == {"gone@example.org": "hard", "full@example.net": "soft"}


@pytest.mark.parametrize("move", [True, False])
def test_it_moves_processed_bounces_to_another_folder(world, tmp_path, move):
    """With MOVE (RFC 6851), or with COPY, \\Deleted and EXPUNGE on a plain IMAP4rev1 server."""
    server = IMAPServer(tmp_path, user="bounces", password="s3cret", move=move).start()
    try:
        bounce = server.add(dsn("postfix_bounce.eml"))
        other = server.add(dsn("out_of_office.eml"))
        source = _imap_source(server, move_to="Processed")
        try:
            bounces_process(source=source)
        finally:
            source.close()
        folders = {uid: m.folder for uid, m in server.messages.items()}
        assert folders[other] == "INBOX"
        assert sorted(folders.values()) == ["INBOX", "Processed"]
        assert (bounce in folders) is move  # a copy has a new uid; the original is expunged
    finally:
        server.stop()


def test_the_command_reads_imap_with_the_password_from_the_environment(world, imap, monkeypatch):
    rows = _sent(world, "gone@example.org")
    uid = imap.add(dsn("postfix_bounce.eml", message_id=rows["gone@example.org"].message_id))
    options = {"imap_host": "127.0.0.1", "imap_port": imap.port, "imap_user": "bounces"}
    monkeypatch.setenv("BOUNCE_PASSWORD", "s3cret")
    with pytest.raises(CommandError, match="certificate verify failed"):
        call_command("process_bounces", imap_password_env="BOUNCE_PASSWORD", **options)
    options["imap_cafile"] = str(imap.cert)
    monkeypatch.setenv("MLM_BOUNCE_IMAP_PASSWORD", "wrong")
    with pytest.raises(CommandError, match="AUTHENTICATIONFAILED"):
        call_command("process_bounces", **options)
    out = StringIO()
    call_command("process_bounces", imap_password_env="BOUNCE_PASSWORD", stdout=out, **options)
    assert out.getvalue().startswith("IMAP bounces@127.0.0.1/INBOX: 1 read, 1 delivery reports")
    assert imap.messages[uid].flags == {"\\Seen"}
    assert DeliveryEvent.objects.get().bounce_kind == "hard"
