"""The browser shell: login, home, unit switcher, CSP on every HTML page, health."""

from django.urls import reverse

from mlm.models import Role
from mlm.services import membership_set
from tests.personas import PASSWORD

REQUIRED_CSP = (
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
)


def test_it_logs_in_and_lands_on_the_only_unit(world, client):
    response = client.post(reverse("login"), {"username": "bob", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("dashboard", args=[world.unit.slug])
    assert b"Faculty of Engineering" in response.content


def test_a_wrong_password_says_so(world, client):
    response = client.post(reverse("login"), {"username": "bob", "password": "nope"})
    assert response.status_code == 200
    assert b"enter a correct username and password" in response.content


def test_someone_in_two_units_chooses_and_switches(world, client_for):
    membership_set(unit=world.other_unit, user=world.alice, role=Role.VIEWER, by=None)
    client = client_for(world.alice)
    home = client.get(reverse("home"))
    assert home.status_code == 200
    for unit in (world.unit, world.other_unit):
        assert reverse("dashboard", args=[unit.slug]).encode() in home.content
    dashboard = client.get(reverse("dashboard", args=[world.unit.slug]))
    # the switcher on every unit page links to the other unit
    assert reverse("dashboard", args=[world.other_unit.slug]).encode() in dashboard.content


def test_someone_in_no_unit_is_told_so(db, client):
    from tests.personas import make_user

    client.force_login(make_user("newcomer"))
    response = client.get(reverse("home"))
    assert b"not a member of any sender unit" in response.content


def test_every_html_page_carries_the_content_security_policy(world, client_for):
    client = client_for(world.alice)
    for url in (reverse("login"), reverse("dashboard", args=[world.unit.slug]), "/no/such/page/"):
        response = client.get(url, follow=True)
        csp = response.headers["Content-Security-Policy"]
        for directive in REQUIRED_CSP:
            assert directive in csp, (url, csp)


def test_logout_is_a_post(world, client_for):
    client = client_for(world.bob)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_static_files_are_served_by_the_app(world, live_server):
    import urllib.request

    with urllib.request.urlopen(live_server.url + "/static/vendor/htmx/htmx.min.js") as answer:
        assert answer.status == 200
        assert b"htmx" in answer.read(2000)


def test_health_reports_database_and_worker(db, client):
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_pages_fit_a_phone(world, client_for):
    response = client_for(world.alice).get(reverse("dashboard", args=[world.unit.slug]))
    assert b'name="viewport" content="width=device-width, initial-scale=1"' in response.content
