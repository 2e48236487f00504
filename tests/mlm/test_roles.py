"""Roles: viewer < editor < approver < admin; too low a role is 403, not 404."""

from django.urls import reverse

from mlm.models import AuditEntry, Role


def test_role_order():
    assert Role.ADMIN.allows(Role.APPROVER)
    assert Role.APPROVER.allows(Role.EDITOR)
    assert Role.EDITOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.EDITOR)
    assert not Role.APPROVER.allows(Role.ADMIN)


def test_a_viewer_cannot_reach_an_editors_action(world, client_for):
    client = client_for(world.vic)
    url = reverse("outbox_send_test", kwargs={"unit_slug": world.unit.slug})
    response = client.post(url)
    assert response.status_code == 403
    assert b"editor role" in response.content
    assert not AuditEntry.objects.filter(verb="mail.test").exists()


def test_an_editor_reaches_the_editors_action(
    world, client_for, django_capture_on_commit_callbacks
):
    client = client_for(world.bob)
    url = reverse("outbox_send_test", kwargs={"unit_slug": world.unit.slug})
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)
    assert response.status_code == 302
    assert len(callbacks) == 1
    assert (
        AuditEntry.objects.for_unit(world.unit).filter(verb="mail.test", actor=world.bob).exists()
    )


def test_only_admins_read_the_audit_log(world, client_for):
    url = reverse("audit", kwargs={"unit_slug": world.unit.slug})
    assert client_for(world.amy).get(url).status_code == 403
    response = client_for(world.alice).get(url)
    assert response.status_code == 200
    assert b"membership.create" in response.content


def test_a_viewer_sees_the_dashboard_without_the_editors_menu(world, client_for):
    response = client_for(world.vic).get(reverse("dashboard", args=[world.unit.slug]))
    assert response.status_code == 200
    assert b"Faculty of Engineering" in response.content
    assert b">Outbox<" not in response.content
    assert b">Audit<" not in response.content


def test_a_get_never_acts(world, client_for):
    client = client_for(world.alice)
    response = client.get(reverse("outbox_send_test", args=[world.unit.slug]))
    assert response.status_code == 405
    assert not AuditEntry.objects.filter(verb="mail.test").exists()
