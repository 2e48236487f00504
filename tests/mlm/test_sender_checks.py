"""Sender checks for operations: SPF, DKIM, DMARC and the return path of each sending domain,
pass or fail with the record to publish. DNS is the outside world: a stub resolver answers."""

from __future__ import annotations

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from django.urls import reverse

from mlm.mail import sender_checks
from mlm.mail.dkim import zone_file_line
from mlm.mail.sender_checks import FAIL, PASS, UNKNOWN, sending_domain_checks
from mlm.models import SendingDomain
from mlm.services import sending_domain_create, sending_domain_dns_record

DOMAIN = "engineering.example.edu"
RELAY = "ip4:192.0.2.25"
BOUNCE_HOST = "mx.engineering.example.edu"


class StubDNS:
    """Answers from a table: {(name, type): [record text] or an exception}. A name missing from
    the table does not exist (NXDOMAIN); a name with other types only has no answer."""

    def __init__(self, records: dict[tuple[str, str], list[str] | Exception]) -> None:
        self.records = dict(records)
        self.asked: list[tuple[str, str]] = []

    def set(self, name: str, rdtype: str, answer: list[str] | Exception | None) -> None:
        if answer is None:
            self.records.pop((name, rdtype), None)
        else:
            self.records[(name, rdtype)] = answer

    def resolve(self, qname: str, rdtype: str):
        name = str(qname).rstrip(".").lower()
        self.asked.append((name, rdtype))
        answer = self.records.get((name, rdtype))
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            if any(known == name for known, _ in self.records):
                raise dns.resolver.NoAnswer
            raise dns.resolver.NXDOMAIN
        kind = dns.rdatatype.from_text(rdtype)
        return [dns.rdata.from_text(dns.rdataclass.IN, kind, text) for text in answer]


def txt(value: str) -> str:
    """A TXT record's presentation: strings of at most 255 characters, as DNS holds it."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


@pytest.fixture
def sending_domain(db, settings) -> SendingDomain:
    settings.MLM_SPF_MECHANISMS = [RELAY]
    settings.MLM_RETURN_PATH_MX = BOUNCE_HOST
    return sending_domain_create(domain=DOMAIN, selector="mlm1", by=None)


@pytest.fixture
def published(sending_domain) -> StubDNS:
    """Everything published as operations should."""
    name, value = sending_domain_dns_record(sending_domain)
    return StubDNS(
        {
            (DOMAIN, "TXT"): [
                txt(f"v=spf1 mx {RELAY} include:amazonses.com -all"),
                txt("google-site-verification=abc"),
            ],
            (DOMAIN, "MX"): [f"10 {BOUNCE_HOST}.", "20 mx2.example.edu."],
            (name, "TXT"): [txt(value)],
            (f"_dmarc.{DOMAIN}", "TXT"): [txt("v=DMARC1; p=quarantine; rua=mailto:d@example.edu")],
        }
    )


def by_name(report) -> dict[str, sender_checks.Check]:
    return {check.name: check for check in report.checks}


def test_it_passes_a_domain_that_published_everything(sending_domain, published):
    report = sending_domain_checks(sending_domain, resolver=published)
    checks = by_name(report)
    assert report.ok
    assert {name: check.status for name, check in checks.items()} == {
        "SPF": PASS,
        "DKIM": PASS,
        "DMARC": PASS,
        "Return path": PASS,
    }
    assert all(check.publish == "" for check in report.checks)
    assert checks["DMARC"].message == "Policy p=quarantine."
    assert checks["Return path"].found == (f"10 {BOUNCE_HOST}.", "20 mx2.example.edu.")
    # A 2048-bit key is published as two strings; the check joins them.
    assert len(checks["DKIM"].found[0]) > 255


def test_each_failing_check_gives_the_record_to_publish(sending_domain):
    """Nothing published (the domain does not exist yet): four failures, four records."""
    report = sending_domain_checks(sending_domain, resolver=StubDNS({}))
    checks = by_name(report)
    assert not report.ok
    assert {check.status for check in report.checks} == {FAIL}
    assert checks["SPF"].publish == f'{DOMAIN}. IN TXT ( "v=spf1 {RELAY} ~all" )'
    assert checks["DKIM"].publish == zone_file_line(*sending_domain_dns_record(sending_domain))
    assert checks["DMARC"].publish == f'_dmarc.{DOMAIN}. IN TXT ( "v=DMARC1; p=none" )'
    assert checks["Return path"].publish == f"{DOMAIN}. IN MX 10 {BOUNCE_HOST}."
    assert checks["SPF"].message == f"{DOMAIN} does not exist (NXDOMAIN)."
    assert "mlm1._domainkey.engineering.example.edu does not exist (NXDOMAIN)" in (
        checks["DKIM"].message
    )


@pytest.mark.parametrize(
    ("records", "message", "publish"),
    [
        (
            ["v=spf1 mx +all"],
            "allows every server on the internet",
            f"v=spf1 mx {RELAY} ~all",
        ),
        (["v=spf1 mx all"], "allows every server", f"v=spf1 mx {RELAY} ~all"),
        (
            ["v=spf1 mx include:_spf.example.edu -all"],
            f"does not name our relay: {RELAY}",
            f"v=spf1 mx include:_spf.example.edu {RELAY} -all",
        ),
        (
            ["v=spf1 mx -all", f"v=spf1 {RELAY} -all"],
            "has 2 SPF records",
            f"v=spf1 mx {RELAY} -all",
        ),
        (["v=spf1 redirect=_spf.example.edu"], "does not name", f"v=spf1 {RELAY} redirect="),
        (["some other text"], "has no SPF record", f"v=spf1 {RELAY} ~all"),
    ],
)
def test_a_wrong_spf_record_fails_with_the_record_to_publish(
    sending_domain, published, records, message, publish
):
    published.set(DOMAIN, "TXT", [txt(r) for r in records])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["SPF"]
    assert check.status == FAIL
    assert message in check.message
    assert publish in check.publish


def test_without_configured_mechanisms_any_spf_record_but_all_passes(
    sending_domain, published, settings
):
    settings.MLM_SPF_MECHANISMS = []
    published.set(DOMAIN, "TXT", [txt("v=spf1 include:_spf.example.edu ~all")])
    assert by_name(sending_domain_checks(sending_domain, resolver=published))["SPF"].ok
    published.set(DOMAIN, "TXT", [txt("v=spf1 +all")])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["SPF"]
    assert not check.ok and check.publish == f'{DOMAIN}. IN TXT ( "v=spf1 ~all" )'


def test_a_published_key_that_is_not_this_key_fails(sending_domain, published):
    """A key rotation: the record still holds the old key, or a revoked one."""
    name, value = sending_domain_dns_record(sending_domain)
    other = sending_domain_create(domain=DOMAIN, selector="mlm2", by=None)
    published.set(name, "TXT", [txt(f"v=DKIM1; k=rsa; p={other.public_key}")])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["DKIM"]
    assert check.status == FAIL and "another key" in check.message
    assert check.publish == zone_file_line(name, value)
    published.set(name, "TXT", [txt("v=DKIM1; k=rsa; p=")])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["DKIM"]
    assert check.status == FAIL and "revoked" in check.message


def test_the_new_key_of_a_rotation_is_checked_before_it_signs(sending_domain, published):
    """The second key is inactive until its record is published: the check says whether it is."""
    second = sending_domain_create(domain=DOMAIN, selector="mlm2", by=None)
    assert not second.active
    check = by_name(sending_domain_checks(second, resolver=published))["DKIM"]
    assert check.status == FAIL
    name, value = sending_domain_dns_record(second)
    published.set(name, "TXT", [txt(value)])
    assert by_name(sending_domain_checks(second, resolver=published))["DKIM"].ok


def test_dmarc_is_inherited_from_the_organisational_domain(sending_domain, published):
    published.set(f"_dmarc.{DOMAIN}", "TXT", None)
    published.set("_dmarc.example.edu", "TXT", [txt("v=DMARC1; p=none; sp=reject")])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["DMARC"]
    assert check.ok
    assert "_dmarc.example.edu applies: policy reject" in check.message


def test_a_dmarc_record_without_a_policy_fails(sending_domain, published):
    published.set(f"_dmarc.{DOMAIN}", "TXT", [txt("v=DMARC1; rua=mailto:d@example.edu")])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["DMARC"]
    assert check.status == FAIL and "no valid p= policy" in check.message
    assert check.publish == f'_dmarc.{DOMAIN}. IN TXT ( "v=DMARC1; p=none" )'


def test_the_return_path_must_take_mail_for_our_bounce_host(sending_domain, published, settings):
    published.set(DOMAIN, "MX", ["10 mail.elsewhere.example."])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["Return path"]
    assert check.status == FAIL and f"not to {BOUNCE_HOST}" in check.message
    published.set(DOMAIN, "MX", ["0 ."])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["Return path"]
    assert check.status == FAIL and "null MX" in check.message
    assert check.publish == f"{DOMAIN}. IN MX 10 {BOUNCE_HOST}."
    settings.MLM_RETURN_PATH_MX = ""
    published.set(DOMAIN, "MX", None)
    published.set(DOMAIN, "A", ["192.0.2.80"])
    check = by_name(sending_domain_checks(sending_domain, resolver=published))["Return path"]
    assert check.ok and "implicit MX" in check.message and check.found == ("192.0.2.80",)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (dns.resolver.LifetimeTimeout(timeout=5.0, errors=[]), "timed out"),
        (dns.exception.Timeout(), "timed out"),
        (dns.resolver.NoNameservers(), "No nameserver answered"),
    ],
)
def test_an_unanswered_lookup_is_unknown_with_a_clear_message(
    sending_domain, published, error, message
):
    """A timeout is not a failure of the domain: the check says unknown and why."""
    for key in list(published.records):
        published.records[key] = error
    report = sending_domain_checks(sending_domain, resolver=published)
    assert {check.status for check in report.checks} == {UNKNOWN}
    assert all(message in check.message for check in report.checks)
    dkim_check = by_name(report)["DKIM"]
    assert dkim_check.publish == zone_file_line(*sending_domain_dns_record(sending_domain))


def test_operations_check_dns_from_the_admin(admin_client, sending_domain, monkeypatch):
    """The change page links to the check; the page shows pass/fail and the records."""
    name, value = sending_domain_dns_record(sending_domain)
    dns_now = StubDNS({(name, "TXT"): [txt(value)]})
    monkeypatch.setattr(sender_checks, "default_resolver", lambda: dns_now)
    change = admin_client.get(reverse("admin:mlm_sendingdomain_change", args=[sending_domain.pk]))
    url = reverse("admin:mlm_sendingdomain_check_dns", args=[sending_domain.pk])
    assert url in change.content.decode()
    page = admin_client.get(url).content.decode()
    assert "DNS checks" in page and "needs attention" in page
    assert page.count('class="dns-check-pass"') == 1  # DKIM
    assert page.count('class="dns-check-fail"') == 3
    assert "v=spf1 ip4:192.0.2.25 ~all" in page
    assert "v=DMARC1; p=none" in page
    assert f"IN MX 10 {BOUNCE_HOST}." in page


def test_operations_check_several_domains_with_the_admin_action(
    admin_client, sending_domain, published, monkeypatch
):
    other = sending_domain_create(domain="alumni.example.edu", selector="mlm1", by=None)
    monkeypatch.setattr(sender_checks, "default_resolver", lambda: published)
    response = admin_client.post(
        reverse("admin:mlm_sendingdomain_changelist"),
        {"action": "check_dns", "_selected_action": [sending_domain.pk, other.pk]},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "all checks pass" in page  # engineering
    assert "alumni.example.edu" in page and "needs attention" in page


def test_only_staff_see_the_dns_checks(client, sending_domain, django_user_model):
    url = reverse("admin:mlm_sendingdomain_check_dns", args=[sending_domain.pk])
    client.force_login(django_user_model.objects.create_user("eve", password="x"))
    assert client.get(url).status_code == 302  # to the admin login
