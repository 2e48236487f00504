"""Sender checks for operations: does DNS say what a sending domain's mail needs to be trusted?

For each `SendingDomain`: SPF (one `v=spf1` TXT record on the domain, naming our relay's
mechanisms from MLM_SPF_MECHANISMS and not `+all`), DKIM (the TXT record at
`<selector>._domainkey.<domain>` carries this key's public key), DMARC (a `v=DMARC1` record with
a `p=` policy at `_dmarc.<domain>`, or inherited from a parent domain as RFC 7489 §6.6.3 allows)
and the return path (the domain takes mail, so bounces reach us: an MX, or an A/AAAA record as
the implicit MX; MLM_RETURN_PATH_MX names the host it must point at). Each check answers pass,
fail or unknown (DNS did not answer) with the exact record to publish when it does not pass.

DNS is the outside world: every lookup goes through `resolver` (dnspython's by default), which
tests replace with a stub. SPF is read, not evaluated: a mechanism is found in the record itself,
not through its includes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.resolver
from django.conf import settings

from mlm.mail import dkim
from mlm.models import SendingDomain

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
LIFETIME = 5.0  # seconds a lookup may take, retries included
DMARC_POLICIES = {"none", "quarantine", "reject"}


class Resolver(Protocol):
    """What the checks ask of a resolver: dnspython's `Resolver.resolve` (rdata iterable)."""

    def resolve(self, qname: str, rdtype: str) -> Iterable: ...


@dataclass(frozen=True)
class Check:
    """One check of one domain: its outcome, what was found, and what to publish."""

    name: str  # SPF, DKIM, DMARC, Return path
    status: str  # pass, fail or unknown
    looked_up: str  # e.g. "TXT _dmarc.eng.example.edu"
    message: str
    found: tuple[str, ...] = ()
    publish: str = ""  # zone-file line(s) to publish; empty when nothing needs publishing

    @property
    def ok(self) -> bool:
        return self.status == PASS


@dataclass(frozen=True)
class DomainReport:
    """The checks of one sending domain's key."""

    sending_domain: SendingDomain
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


class _Missing(Exception):
    """The name does not exist, or has no record of the type: a definite answer."""

    def __init__(self, message: str, *, nxdomain: bool) -> None:
        super().__init__(message)
        self.nxdomain = nxdomain


class _NoAnswer(Exception):
    """DNS gave no answer (timeout, no nameserver answered): we cannot tell."""


def default_resolver() -> Resolver:
    """dnspython's resolver with the system's configuration and a short lifetime."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = LIFETIME
    return resolver


def _lookup(resolver: Resolver, name: str, rdtype: str) -> list:
    try:
        return list(resolver.resolve(name, rdtype))
    except dns.resolver.NXDOMAIN:
        raise _Missing(f"{name} does not exist (NXDOMAIN).", nxdomain=True) from None
    except dns.resolver.NoAnswer:
        raise _Missing(f"{name} has no {rdtype} record.", nxdomain=False) from None
    except dns.exception.Timeout:
        raise _NoAnswer(
            f"The DNS lookup of {rdtype} {name} timed out: check again later, or check the "
            "server's resolver."
        ) from None
    except dns.resolver.NoNameservers:
        raise _NoAnswer(
            f"No nameserver answered for {rdtype} {name} (SERVFAIL or refused): the zone may be "
            "broken or unreachable."
        ) from None
    except dns.exception.DNSException as error:
        raise _NoAnswer(f"The DNS lookup of {rdtype} {name} failed: {error}") from None


def _txt(resolver: Resolver, name: str) -> list[str]:
    """The TXT records at `name`, each one's strings joined (a long record is split in DNS)."""
    records = []
    for rdata in _lookup(resolver, name, "TXT"):
        records.append(b"".join(rdata.strings).decode("utf-8", "replace"))
    return records


def _tags(record: str) -> dict[str, str]:
    """`k=v; k=v` tag lists (DKIM, DMARC); keys lower-cased, whitespace around values dropped."""
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    return tags


def txt_line(name: str, value: str) -> str:
    """A TXT record as a zone-file line (strings of at most 255 characters)."""
    return dkim.zone_file_line(name, value)


# --- SPF ----------------------------------------------------------------------------------------


def spf_record(existing: str | None, mechanisms: list[str]) -> str:
    """The SPF record to publish: `existing` with our mechanisms added before its `all` (and a
    `+all` made `~all`), or a new one."""
    if not existing:
        return " ".join(["v=spf1", *(mechanisms or ["mx"]), "~all"])
    terms = existing.split()[1:]
    lowered = {term.lower().lstrip("+") for term in terms}
    kept = ["~all" if term.lower() in {"all", "+all"} else term for term in terms]
    ending = [term for term in kept if term.lower().lstrip("+-~?") == "all"]
    ending += [term for term in kept if term.lower().startswith("redirect=")]
    middle = [term for term in kept if term not in ending]
    added = [m for m in mechanisms if m.lower() not in lowered]
    if not ending:
        ending = ["~all"]
    return " ".join(["v=spf1", *middle, *added, *ending])


def check_spf(domain: str, *, resolver: Resolver, mechanisms: list[str]) -> Check:
    """One `v=spf1` TXT record on the domain, naming every mechanism of our relay, not `+all`."""
    looked_up = f"TXT {domain}"
    try:
        records = _txt(resolver, domain)
    except _NoAnswer as error:
        return Check("SPF", UNKNOWN, looked_up, str(error))
    except _Missing as error:
        records, missing_note = [], str(error)
    else:
        missing_note = ""
    spf = [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    found = tuple(spf)
    if not spf:
        record = spf_record(None, mechanisms)
        message = missing_note or f"{domain} has no SPF record (TXT v=spf1)."
        return Check("SPF", FAIL, looked_up, message, found, txt_line(domain, record))
    if len(spf) > 1:
        record = spf_record(spf[0], mechanisms)
        message = (
            f"{domain} has {len(spf)} SPF records: receivers treat that as an error (RFC 7208 "
            "§4.5). Replace them with one."
        )
        return Check("SPF", FAIL, looked_up, message, found, txt_line(domain, record))
    terms = [term.lower() for term in spf[0].split()[1:]]
    if "all" in terms or "+all" in terms:
        message = f"The SPF record of {domain} allows every server on the internet (+all)."
        record = spf_record(spf[0], mechanisms)
        return Check("SPF", FAIL, looked_up, message, found, txt_line(domain, record))
    absent = [m for m in mechanisms if m.lower() not in {t.lstrip("+") for t in terms}]
    if absent:
        message = f"The SPF record of {domain} does not name our relay: {', '.join(absent)}."
        record = spf_record(spf[0], mechanisms)
        return Check("SPF", FAIL, looked_up, message, found, txt_line(domain, record))
    named = f", naming {', '.join(mechanisms)}" if mechanisms else ""
    return Check("SPF", PASS, looked_up, f"One SPF record{named}.", found)


# --- DKIM ---------------------------------------------------------------------------------------


def check_dkim(sending_domain: SendingDomain, *, resolver: Resolver) -> Check:
    """The TXT record at `<selector>._domainkey.<domain>` carries this key's public key."""
    name, value = dkim.dns_record(
        domain=sending_domain.domain,
        selector=sending_domain.selector,
        public_key=sending_domain.public_key,
    )
    looked_up, publish = f"TXT {name}", txt_line(name, value)
    try:
        records = _txt(resolver, name)
    except _NoAnswer as error:
        return Check("DKIM", UNKNOWN, looked_up, str(error), publish=publish)
    except _Missing as error:
        return Check("DKIM", FAIL, looked_up, f"{error} Publish the key.", publish=publish)
    keys = [r for r in records if "p" in _tags(r)]
    found = tuple(keys)
    if not keys:
        message = f"{name} has no DKIM key record (TXT with p=)."
        return Check("DKIM", FAIL, looked_up, message, found, publish)
    published = ["".join(_tags(r)["p"].split()) for r in keys]
    if sending_domain.public_key in published and len(keys) == 1:
        return Check("DKIM", PASS, looked_up, "The published key is this key.", found)
    if len(keys) > 1:
        message = f"{name} has {len(keys)} key records: publish only this key's."
    elif not published[0]:
        message = f"The key at {name} is revoked (empty p=)."
    else:
        message = f"The key published at {name} is another key (an old one?): publish this one."
    return Check("DKIM", FAIL, looked_up, message, found, publish)


# --- DMARC --------------------------------------------------------------------------------------


def _dmarc_records(resolver: Resolver, domain: str) -> list[str]:
    records = _txt(resolver, f"_dmarc.{domain}")
    return [r for r in records if r.replace(" ", "").startswith("v=DMARC1")]


def check_dmarc(domain: str, *, resolver: Resolver) -> Check:
    """A `v=DMARC1` record with a `p=` policy at `_dmarc.<domain>`, or at a parent domain (its
    `sp=` or `p=` then applies, RFC 7489 §6.6.3)."""
    name = f"_dmarc.{domain}"
    looked_up = f"TXT {name}"
    publish = txt_line(name, "v=DMARC1; p=none")
    advice = (
        " p=none is the least that large mailbox providers require of bulk senders; add "
        "rua=mailto:… to receive reports, and move to p=quarantine once they are clean."
    )
    try:
        records = _dmarc_records(resolver, domain)
    except _NoAnswer as error:
        return Check("DMARC", UNKNOWN, looked_up, str(error), publish=publish)
    except _Missing:
        records = []
    if len(records) > 1:
        message = f"{name} has {len(records)} DMARC records: receivers then apply none."
        return Check("DMARC", FAIL, looked_up, message + advice, tuple(records), publish)
    if records:
        policy = _tags(records[0]).get("p", "").lower()
        if policy in DMARC_POLICIES:
            return Check("DMARC", PASS, looked_up, f"Policy p={policy}.", tuple(records))
        message = f"The DMARC record at {name} has no valid p= policy."
        return Check("DMARC", FAIL, looked_up, message + advice, tuple(records), publish)
    labels = domain.split(".")
    for i in range(1, len(labels) - 1):  # parents, not the top-level domain
        parent = ".".join(labels[i:])
        try:
            inherited = _dmarc_records(resolver, parent)
        except _NoAnswer as error:
            return Check("DMARC", UNKNOWN, f"TXT _dmarc.{parent}", str(error), publish=publish)
        except _Missing:
            continue
        if len(inherited) == 1:
            tags = _tags(inherited[0])
            policy = (tags.get("sp") or tags.get("p", "")).lower()
            if policy in DMARC_POLICIES:
                message = f"No record of its own; _dmarc.{parent} applies: policy {policy}."
                return Check("DMARC", PASS, f"TXT _dmarc.{parent}", message, tuple(inherited))
        break  # the organisational domain's record decides, valid or not
    message = f"{domain} has no DMARC record (TXT v=DMARC1 at {name})."
    return Check("DMARC", FAIL, looked_up, message + advice, publish=publish)


# --- return path --------------------------------------------------------------------------------


def check_return_path(domain: str, *, resolver: Resolver, mx_host: str = "") -> Check:
    """The return-path domain takes mail, so bounces reach us: an MX (pointing at `mx_host` when
    operations name one), or an A/AAAA record (the implicit MX of RFC 5321 §5.1)."""
    looked_up = f"MX {domain}"
    mx_host = mx_host.strip().lower().rstrip(".")
    target = f"{mx_host}." if mx_host else "<the host that receives your bounces>."
    publish = f"{domain}. IN MX 10 {target}"
    try:
        answers = _lookup(resolver, domain, "MX")
    except _NoAnswer as error:
        return Check("Return path", UNKNOWN, looked_up, str(error), publish=publish)
    except _Missing as error:
        if error.nxdomain:
            return Check("Return path", FAIL, looked_up, str(error), publish=publish)
        answers = []
    hosts = sorted((r.preference, str(r.exchange).lower().rstrip(".")) for r in answers)
    found = tuple(f"{preference} {host}." for preference, host in hosts)
    names = [host for _, host in hosts]
    if names == [""]:  # RFC 7505 null MX: "0 ."
        message = f"{domain} publishes a null MX: it takes no mail, so bounces to it are lost."
        return Check("Return path", FAIL, looked_up, message, found, publish)
    if names:
        if mx_host and mx_host not in names:
            message = f"Bounces to {domain} go to {', '.join(names)}, not to {mx_host}."
            return Check("Return path", FAIL, looked_up, message, found, publish)
        return Check("Return path", PASS, looked_up, f"Bounces go to {', '.join(names)}.", found)
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            addresses += [r.to_text() for r in _lookup(resolver, domain, rdtype)]
        except _NoAnswer as error:
            return Check("Return path", UNKNOWN, f"{rdtype} {domain}", str(error), publish=publish)
        except _Missing:
            continue
    if addresses and not mx_host:
        message = f"{domain} has no MX; its address record takes bounces (implicit MX)."
        return Check("Return path", PASS, f"A/AAAA {domain}", message, tuple(addresses))
    message = f"{domain} has no MX record, so bounces to it may not reach us."
    return Check("Return path", FAIL, looked_up, message, tuple(addresses), publish)


# --- all of them --------------------------------------------------------------------------------


def sending_domain_checks(
    sending_domain: SendingDomain, *, resolver: Resolver | None = None
) -> DomainReport:
    """Every check of one sending domain's key (DNS through `resolver`, dnspython's by default)."""
    if resolver is None:
        try:
            resolver = default_resolver()
        except dns.exception.DNSException as error:
            problem = f"This server has no usable DNS resolver configuration: {error}"
            names = ("SPF", "DKIM", "DMARC", "Return path")
            return DomainReport(sending_domain, [Check(n, UNKNOWN, "", problem) for n in names])
    domain = sending_domain.domain
    return DomainReport(
        sending_domain,
        [
            check_spf(domain, resolver=resolver, mechanisms=settings.MLM_SPF_MECHANISMS),
            check_dkim(sending_domain, resolver=resolver),
            check_dmarc(domain, resolver=resolver),
            check_return_path(domain, resolver=resolver, mx_host=settings.MLM_RETURN_PATH_MX),
        ],
    )
