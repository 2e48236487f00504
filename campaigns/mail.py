"""Building a campaign's mails: template variables, recipient links, headers, the message object.

`CampaignMailer` is made once per campaign (templates compiled, CSS inlined, constants computed)
and then gives one message per recipient; dispatch adds List-Unsubscribe, DKIM and sending.

Every mail links to its web version (campaigns.web_version) unless its unit turned web versions
off: templates may place `{{ web_version_url }}` (with `{{ web_version_label }}`, "View this
mail in your browser" in the recipient's language) themselves; a part whose templates do not
gets a small line with the link at its top.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from email.utils import formataddr, formatdate, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.html import escape

from campaigns.models import Campaign
from campaigns.rendering import CompiledMail, MailParts
from consent.tokens import make_recipient_token, make_web_version_token, public_link
from mlm.languages import language_of, text_in
from recipients.models import Recipient

# Clearly fake links for previews, checks and test mails: a test mail must never carry a real
# recipient's unsubscribe link (an editor clicking it would withdraw that person's consent).
SAMPLE_UNSUBSCRIBE_URL = "https://example.invalid/unsubscribe/sample-link"
SAMPLE_PREFERENCES_URL = "https://example.invalid/preferences/sample-link"
SAMPLE_WEB_VERSION_URL = "https://example.invalid/web-version/sample-link"
SAMPLE_RECIPIENT = {
    "first_name": "Chris",
    "last_name": "Chan",
    "email": "chris.chan@example.com",
    "category": "external",
    "locale": "en",
    "attributes": {},
}
TEST_PREFIX = "[TEST] "

# The web version line, in each language a recipient may read (mlm.languages).
WEB_VERSION_LABELS = {
    "en": "View this mail in your browser",
    "zh-hant": "在瀏覽器中查看此郵件",
    "zh-hans": "在浏览器中查看此邮件",
}
WEB_VERSION_VARIABLE = re.compile(r"\bweb_version_url\b")
_BODY_OPENING = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def recipient_variables(recipient: Recipient) -> dict[str, Any]:
    """A recipient's fields for templates; blank ones are left out, so `default()` applies."""
    variables: dict[str, Any] = {
        "email": recipient.email,
        "category": recipient.category,
        "attributes": dict(recipient.attributes or {}),
    }
    if recipient.first_name:
        variables["first_name"] = recipient.first_name
    if recipient.last_name:
        variables["last_name"] = recipient.last_name
    if recipient.locale:
        variables["locale"] = recipient.locale
    return variables


def campaign_variables(campaign: Campaign, lang: str | None = None) -> dict[str, Any]:
    """What every recipient's mail of a campaign shares: the unit, the campaign, the DM type,
    with the unit's and DM type's texts in `lang` (default English) where they have one.

    Plain dicts, never model instances: a template must not reach the ORM (`unit.recipients`).
    """
    unit, dm_type = campaign.unit, campaign.dm_type
    lang = lang or settings.LANGUAGE_CODE
    return {
        "unit": {
            "name": text_in(unit, "name", lang),
            "postal_address": text_in(unit, "postal_address", lang),
            "slug": unit.slug,
        },
        "campaign": {"name": campaign.name, "code": str(campaign.code)},
        "dm_type": {"name": text_in(dm_type, "name", lang)},
        "web_version_label": WEB_VERSION_LABELS.get(lang, WEB_VERSION_LABELS["en"]),
    }


def sample_links() -> dict[str, str]:
    """Clearly fake links (and the English web version label) for previews, checks, tests."""
    return {
        "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL,
        "preferences_url": SAMPLE_PREFERENCES_URL,
        "web_version_url": SAMPLE_WEB_VERSION_URL,
        "web_version_label": WEB_VERSION_LABELS["en"],
    }


def with_web_version_line(
    parts: MailParts, url: str, label: str, *, html: bool, text: bool
) -> MailParts:
    """`parts` with a small "view in your browser" line at the top of the HTML part (just
    inside `<body>`, else first) and of the text part, where asked."""
    if not url or not (html or text):
        return parts
    changed = {}
    if html:
        line = (
            '<div style="padding:8px 12px;font-size:12px;line-height:1.4;text-align:center;'
            f'color:#4b5563"><a href="{escape(url)}" style="color:#374151">{escape(label)}</a>'
            "</div>"
        )
        found = _BODY_OPENING.search(parts.html)
        at = found.end() if found else 0
        changed["html"] = parts.html[:at] + line + parts.html[at:]
    if text:
        changed["text"] = f"{label}: {url}\n\n{parts.text}"
    return replace(parts, **changed)


@dataclass(frozen=True)
class Links:
    unsubscribe: str
    one_click: str
    preferences: str
    web_version: str  # empty when the unit turned web versions off

    def variables(self) -> dict[str, str]:
        """The links as the templates name them."""
        return {
            "unsubscribe_url": self.unsubscribe,
            "preferences_url": self.preferences,
            "web_version_url": self.web_version,
        }


class LinkMaker:
    """A recipient's unsubscribe, one-click, preference and web version links for one campaign.

    Signs one token per recipient (consent.tokens), and one for the web version, and fills them
    into URL prefixes resolved once per campaign, rather than resolving four URLs per recipient.
    """

    _PLACEHOLDER = "TOKEN"

    def __init__(self, campaign: Campaign) -> None:
        self.dm_type = campaign.dm_type
        self.campaign_code = campaign.code
        from campaigns.selectors import unit_settings

        self.web_version = unit_settings(campaign.unit).web_version_enabled
        self._urls = {
            name: public_link(name, self._PLACEHOLDER).split(self._PLACEHOLDER)
            for name in (
                "public_unsubscribe",
                "public_one_click",
                "public_preferences",
                "public_web_version",
            )
        }

    def _url(self, name: str, token: str) -> str:
        before, after = self._urls[name]
        return before + token + after

    def links(self, recipient: Recipient) -> Links:
        token = make_recipient_token(
            recipient=recipient.code, dm_type=self.dm_type.code, campaign_code=self.campaign_code
        )
        return Links(
            unsubscribe=self._url("public_unsubscribe", token),
            one_click=self._url("public_one_click", token),
            preferences=self._url("public_preferences", token),
            web_version=self.web_version_url(recipient) if self.web_version else "",
        )

    def web_version_url(self, recipient: Recipient) -> str:
        """The absolute link to the web version of this campaign's mail to `recipient`."""
        token = make_web_version_token(recipient=recipient.code, campaign_code=self.campaign_code)
        return self._url("public_web_version", token)


@dataclass
class BuiltMail:
    """A test mail: the message to hand to a backend, and its parts."""

    message: EmailMultiAlternatives
    parts: MailParts
    message_id: str


class CampaignMailer:
    """A campaign compiled once; `recipient_parts(recipient)` renders one recipient's mail."""

    def __init__(self, campaign: Campaign, *, strict: bool = False) -> None:
        self.campaign = campaign
        self.by_language = {
            code: campaign_variables(campaign, code) for code, _ in settings.LANGUAGES
        }
        self.shared = self.by_language[settings.LANGUAGE_CODE]
        # Only what reads the same in every language is rendered once; a unit or DM type with
        # Chinese versions is rendered per recipient, in the recipient's language.
        constants = {
            name: value
            for name, value in self.shared.items()
            if all(variables[name] == value for variables in self.by_language.values())
        }
        layout = campaign.layout.html if campaign.layout_id else None
        # A part whose templates place the web version link themselves gets no line of ours.
        html_sources = (campaign.html_body, layout or "")
        self.html_places_web_version = any(map(WEB_VERSION_VARIABLE.search, html_sources))
        self.text_places_web_version = (
            bool(WEB_VERSION_VARIABLE.search(campaign.text_body))
            if campaign.text_body.strip()
            else self.html_places_web_version
        )
        self.compiled = CompiledMail(
            subject=campaign.subject,
            html_body=campaign.html_body,
            body_format=campaign.body_format,
            layout=layout,
            text_body=campaign.text_body,
            strict=strict,
            sample=self.sample_variables(),
            constants=constants,
        )
        identity = campaign.identity
        self.from_email = formataddr((identity.name, identity.email))
        reply_to = campaign.reply_to or identity.reply_to
        self.reply_to = [reply_to] if reply_to else []
        self.msgid_domain = identity.email.rpartition("@")[2] or "localhost"
        self.unit_id = campaign.unit_id
        self.campaign_id = campaign.pk
        self._links: LinkMaker | None = None
        self._date_second, self._date_header = 0, ""

    def shared_for(self, recipient: Recipient | None) -> dict[str, Any]:
        """The campaign's variables in the recipient's language (their locale, else the unit's)."""
        locale = recipient.locale if recipient is not None else ""
        return self.by_language[language_of(locale or self.campaign.unit.default_locale)]

    def sample_variables(self, recipient: Recipient | None = None) -> dict[str, Any]:
        """Variables of a real recipient or the sample one, with clearly fake links."""
        if recipient is None:
            return {**sample_links(), **self.shared, **SAMPLE_RECIPIENT}
        return {**sample_links(), **self.shared_for(recipient), **recipient_variables(recipient)}

    def link_maker(self) -> LinkMaker:
        if self._links is None:
            self._links = LinkMaker(self.campaign)
        return self._links

    def render(self, variables: dict[str, Any]) -> MailParts:
        """The parts of one mail, with the web version line where the templates have none."""
        return with_web_version_line(
            self.compiled.render(variables),
            variables.get("web_version_url", ""),
            variables.get("web_version_label", WEB_VERSION_LABELS["en"]),
            html=not self.html_places_web_version,
            text=not self.text_places_web_version,
        )

    def variables(self, recipient: Recipient, links: Links) -> dict[str, Any]:
        """The variables of a real recipient's mail: the campaign's in their language, their
        fields, their links."""
        return {**self.shared_for(recipient), **recipient_variables(recipient), **links.variables()}

    def _date(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date_header = now, formatdate(now, usegmt=True)
        return self._date_header

    def _message(self, parts: MailParts, *, to: str, subject: str) -> tuple[Any, str]:
        message_id = make_msgid(domain=self.msgid_domain)
        message = EmailMultiAlternatives(
            subject=subject,
            body=parts.text,
            from_email=self.from_email,
            to=[to],
            reply_to=self.reply_to,
            headers={"Message-ID": message_id, "Date": self._date()},
            alternatives=[(parts.html, "text/html")],
        )
        message.mlm_unit_id = self.unit_id
        message.mlm_campaign_id = self.campaign_id
        return message, message_id

    def recipient_parts(self, recipient: Recipient) -> tuple[MailParts, Links]:
        """One recipient's rendered mail, in their language, with their real links."""
        links = self.link_maker().links(recipient)
        return self.render(self.variables(recipient, links)), links

    def web_version(self, recipient: Recipient) -> MailParts:
        """The mail of `recipient` as they received it, for its web version: the same render,
        layout and links, less the line linking to the web version itself."""
        links = self.link_maker().links(recipient)
        return self.render({**self.variables(recipient, links), "web_version_url": ""})

    def build_test(self, *, to: str, recipient: Recipient | None = None) -> BuiltMail:
        """A test mail to an editor: [TEST] subject, personalised as `recipient` (or the sample)
        but with fake links; never a delivery, never counted."""
        parts = self.render(self.sample_variables(recipient))
        message, message_id = self._message(parts, to=to, subject=TEST_PREFIX + parts.subject)
        message.extra_headers["X-MLM-Test"] = "yes"
        if recipient is not None:
            # Kept by the Outbox, it shows the person's data: their erasure must find it (I9).
            message.mlm_about_hash = recipient.email_hash
        return BuiltMail(message, parts, message_id)


class CampaignMessages:
    """A campaign's real mails for dispatch, fast: rendered by `CampaignMailer`, assembled as
    bytes by `mlm.mailbuild.MessageBuilder` (invariant headers built once), DKIM-signed on our
    own paths when operations gave the From domain a key.

    Every mail carries List-Unsubscribe (the recipient's one-click https URL) and
    List-Unsubscribe-Post (I5), List-Id naming the unit and DM type, Feedback-ID
    (campaign:unit:dmtype:sender) and Precedence: bulk.
    """

    def __init__(self, campaign: Campaign, *, sign: bool = True) -> None:
        from mlm.dkim import signer_for_domain
        from mlm.mailbuild import MessageBuilder

        self.mailer = CampaignMailer(campaign)
        self.campaign = campaign
        unit, dm_type, identity = campaign.unit, campaign.dm_type, campaign.identity
        domain = identity.email.rpartition("@")[2].lower()
        reply_to = campaign.reply_to or identity.reply_to
        self.builder = MessageBuilder(
            from_addr=identity.email,
            from_name=identity.name,
            reply_to=[("", reply_to)] if reply_to else [],
            list_id=(f"{dm_type.name} of {unit.name}", list_id(campaign, domain)),
            feedback_id=f"{campaign.pk}:{unit.pk}:{dm_type.pk}:mlm",
            message_id_domain=domain,
            extra_headers=[("Precedence", "bulk")],
        )
        self.signer = signer_for_domain(domain) if sign else None
        from campaigns.selectors import unit_settings

        # Open and click tracking is the ESP's (anymail's track_opens/track_clicks), off unless
        # the unit turned it on: said explicitly, so an ESP account's default cannot turn it on.
        self.tracking = unit_settings(unit).tracking_enabled
        self.metadata_campaign = str(campaign.code)
        self.metadata_unit = unit.slug
        self.unit_id = campaign.unit_id
        self.campaign_id = campaign.pk

    def message_id(self, delivery_id: int) -> str:
        """The delivery's Message-ID: stable, so a duplicate at any server is recognisable."""
        return message_id_for(self.campaign, delivery_id, self.builder.message_id_domain)

    def build(self, recipient: Recipient, *, delivery_id: int, message_id: str = ""):
        """The `PrebuiltEmailMessage` of one delivery (raises RenderError, HeaderInjection)."""
        parts, links = self.mailer.recipient_parts(recipient)
        built = self.builder.build(
            to_addr=recipient.email,
            # One line: a line break in recipient data must not start a new header.
            to_name=" ".join(recipient.full_name.split()),
            text=parts.text,
            html=parts.html,
            subject=parts.subject,
            unsubscribe_url=links.one_click,
            message_id=message_id or self.message_id(delivery_id),
        )
        if self.signer is not None:
            # mlm.mailbuild writes CRLF line endings only (tests/mlm/test_mailbuild.py).
            built.raw = self.signer.sign(built.raw, crlf_only=True)
        # anymail hands metadata to the ESP, whose tracking events echo it back (feedback).
        message = self.builder.django_message(
            built,
            metadata={
                "delivery": str(delivery_id),
                "campaign": self.metadata_campaign,
                "unit": self.metadata_unit,
            },
        )
        message.mlm_unit_id = self.unit_id
        message.mlm_campaign_id = self.campaign_id
        message.track_opens = message.track_clicks = self.tracking
        return message


def list_id(campaign: Campaign, domain: str) -> str:
    """The List-Id identifier of a campaign's DM type in its unit (RFC 2919: domain-like)."""
    slug = campaign.unit.slug.replace("_", "-").strip("-").lower() or f"unit{campaign.unit_id}"
    return f"{campaign.dm_type.key.replace('_', '-')[:40]}.{slug}.{domain}"


def message_id_for(campaign: Campaign, delivery_id: int, domain: str) -> str:
    """`<delivery.campaign@domain>`: one Message-ID per delivery, whichever worker sends it."""
    return f"<{delivery_id}.{campaign.code.hex[:16]}@{domain}>"
