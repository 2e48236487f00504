"""The embedded default's Outbox: mail kept where an administrator reads it in the browser."""

from django.urls import reverse

from mlm.mail import OutboxBackend, build_test_message
from mlm.models import OutboxMessage
from mlm.tasks import send_test_mail


def keep(world, **kwargs) -> OutboxMessage:
    message = build_test_message(unit=world.unit, to="reader@example.org")
    message.subject = kwargs.get("subject", message.subject)
    OutboxBackend().send_messages([message])
    return OutboxMessage.objects.for_unit(world.unit).latest("created_at")


def test_it_keeps_the_raw_message_with_both_parts(world):
    item = keep(world)
    raw = bytes(item.raw)
    assert b"Content-Type: multipart/alternative" in raw
    assert b"text/html" in raw and b"text/plain" in raw
    assert item.recipients == "reader@example.org"


def test_the_page_shows_html_text_and_headers(world, client_for):
    item = keep(world, subject="Open day 開放日")
    client = client_for(world.bob)
    listing = client.get(reverse("outbox", args=[world.unit.slug]))
    assert "Open day 開放日" in listing.content.decode()
    detail = client.get(reverse("outbox_detail", args=[world.unit.slug, item.code]))
    page = detail.content.decode()
    assert "If you can read this, the mail backend works." in page  # the text part
    assert "Subject" in page and "Open day 開放日" in page  # decoded headers
    assert reverse("outbox_html", args=[world.unit.slug, item.code]) in page


def test_the_html_part_is_served_sandboxed(world, client_for):
    item = keep(world)
    response = client_for(world.bob).get(reverse("outbox_html", args=[world.unit.slug, item.code]))
    assert b"Test message from Faculty of Engineering" in response.content
    csp = response.headers["Content-Security-Policy"]
    assert "sandbox" in csp
    assert "script-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_another_units_message_is_404(world, client_for):
    item = keep(world)
    client = client_for(world.charlie)
    url = reverse("outbox_detail", args=[world.other_unit.slug, item.code])
    assert client.get(url).status_code == 404


def test_the_test_mail_task_sends_through_the_configured_backend(world, settings):
    settings.EMAIL_BACKEND = "mlm.mail.OutboxBackend"
    send_test_mail(world.unit.pk, world.bob.pk)
    item = OutboxMessage.objects.for_unit(world.unit).get()
    assert item.recipients == world.bob.email
    assert item.subject.startswith("[TEST]")


def test_the_test_mail_is_enqueued_only_after_commit(
    world, client_for, django_capture_on_commit_callbacks
):
    client = client_for(world.bob)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(reverse("outbox_send_test", args=[world.unit.slug]))
    assert len(callbacks) == 1
