"""Content checks: what would break the law or the mail, each with a message that says how to
fix it. All must pass before a campaign is submitted or approved."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import html as lxml_html

from campaigns.mail import (
    SAMPLE_PREFERENCES_URL,
    SAMPLE_UNSUBSCRIBE_URL,
    CampaignMailer,
)
from campaigns.models import Campaign
from campaigns.rendering import MailParts
from campaigns.sandbox import RenderError

SUBJECT_MAX = 150
SIZE_LIMIT = 102 * 1024  # Gmail clips a message whose HTML is larger
# A subject must not pretend to continue a conversation (UEMO, CAN-SPAM: no misleading subject).
_PREFIXES = (
    r"(re|fw|fwd|aw|wg|sv|vs|tr|rif|enc|antw|odp|vl|"
    r"回覆|回复|答覆|答复|轉寄|转寄|轉發|转发|轉送|转送)"
)
REPLY_OR_FORWARD = re.compile(
    rf"^\s*{_PREFIXES}\s*(\[\d+\])?\s*[:\uff1a]"  # RE: Fwd: 回覆 with a colon
    rf"|^\s*[\[(\u3010]\s*{_PREFIXES}\s*[:\uff1a\])\u3011]",  # [Re] (Fwd: …) 【转发】
    re.I,
)
REPLY_OR_FORWARD_CJK = re.compile(r"^\s*(回覆|回复|答覆|答复|轉寄|转寄|轉發|转发)")
UNSUBSCRIBE_EN = re.compile(r"\bunsubscribe\b", re.I)
UNSUBSCRIBE_ZH = re.compile(r"取消訂閱|取消订阅|退訂|退订|取消訂閲")


@dataclass
class CheckResult:
    key: str
    label: str
    passed: bool
    message: str = ""
    findings: list[dict] = field(default_factory=list)


@dataclass
class CheckReport:
    results: list[CheckResult]
    sample_label: str
    parts: MailParts | None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


def _text_of(html: str) -> str:
    try:
        return " ".join(lxml_html.document_fromstring(html).text_content().split())
    except Exception:
        return ""


def _document(html: str):
    try:
        return lxml_html.document_fromstring(html)
    except Exception:
        return None


def _banned_pattern(word: str) -> re.Pattern:
    escaped = re.escape(word)
    if word.isascii():
        return re.compile(rf"(?<![\w-]){escaped}(?![\w-])", re.I)
    return re.compile(escaped, re.I)


def banned_word_findings(campaign: Campaign, parts: MailParts) -> list[str]:
    """The unit's banned words that occur in the subject, the HTML's text or the text part."""
    from campaigns.selectors import unit_settings

    haystack = "\n".join([parts.subject, _text_of(parts.html), parts.text])
    return [
        word
        for word in unit_settings(campaign.unit).banned_word_list
        if _banned_pattern(word).search(haystack)
    ]


def run_checks(campaign: Campaign) -> CheckReport:
    """Every content check on the campaign, rendered for a sample recipient of its lists."""
    from campaigns.selectors import sample_recipient

    results: list[CheckResult] = []
    recipient = sample_recipient(campaign)
    sample_label = recipient.email if recipient else "a sample recipient (the lists are empty)"

    def add(key: str, label: str, ok: bool, message: str = "", findings=None) -> None:
        results.append(CheckResult(key, label, ok, "" if ok else message, findings or []))

    # Lists and audience (I3), identity.
    lists = list(campaign.lists.all())
    wrong = [rl.name for rl in lists if rl.audience != campaign.audience]
    segment = campaign.segment
    if segment is not None:
        wrong += [segment.name] if segment.audience != campaign.audience else []
    add(
        "lists",
        "Lists of the campaign's audience",
        bool(lists or segment) and not wrong,
        "Choose at least one list or a segment."
        if not (lists or segment)
        else f"These lists are of the other audience: {', '.join(wrong)}.",
    )
    add(
        "identity",
        "The From identity belongs to the unit",
        campaign.identity.unit_id == campaign.unit_id,
        "Choose one of your unit's sender identities as From.",
    )

    # Templates render with strict undefined.
    strict_parts = None
    try:
        mailer = CampaignMailer(campaign, strict=True)
        strict_parts = mailer.render(mailer.sample_variables(recipient))
        add("templates", "Every template renders for a sample recipient", True)
    except RenderError as error:
        hint = ""
        if "undefined" in error.detail:
            hint = ' Check the spelling, or give a fallback: {{ first_name|default("friend") }}.'
        add(
            "templates",
            "Every template renders for a sample recipient",
            False,
            f"The {error} (rendering for {sample_label}).{hint}",
        )
    parts = strict_parts
    if parts is None:
        try:
            mailer = CampaignMailer(campaign, strict=False)
            parts = mailer.render(mailer.sample_variables(recipient))
        except RenderError:
            parts = None

    # Subject.
    subject = parts.subject if parts else " ".join(campaign.subject.split())
    add("subject_present", "A subject is present", bool(subject), "Write a subject.")
    add(
        "subject_length",
        f"The subject is under {SUBJECT_MAX} characters",
        len(subject) < SUBJECT_MAX,
        f"The subject has {len(subject)} characters: shorten it to under {SUBJECT_MAX}.",
    )
    pretends = bool(REPLY_OR_FORWARD.search(subject) or REPLY_OR_FORWARD_CJK.search(subject))
    add(
        "subject_honest",
        "The subject does not pretend to be a reply or a forward",
        not pretends,
        "Remove the RE:/FW:/回覆/转发 prefix: a marketing mail must not look like a reply "
        "or a forward.",
    )

    if parts is None:
        for key, label in (
            ("unsubscribe_link", "The body or layout contains the unsubscribe link"),
            ("preferences_link", "The mail links to the preference centre"),
            ("footer_address", "The footer has the unit's postal address"),
            ("footer_statement", "The footer says how to unsubscribe, in English and Chinese"),
            ("size", "The mail is under 102 KB"),
            ("images_alt", "Images have alt text"),
            ("links_https", "Links are absolute https"),
            ("banned_words", "No banned words, or each one acknowledged"),
        ):
            add(key, label, False, "Fix the template errors first; this check needs a render.")
        return CheckReport(results, sample_label, None)

    document = _document(parts.html)
    anchors = [] if document is None else document.xpath("//a[@href]")
    hrefs = [a.get("href", "").strip() for a in anchors]
    add(
        "unsubscribe_link",
        "The body or layout contains the unsubscribe link",
        SAMPLE_UNSUBSCRIBE_URL in hrefs,
        'Add a link to {{ unsubscribe_url }}, e.g. <a href="{{ unsubscribe_url }}">Unsubscribe'
        "</a>, in the layout's footer or the body.",
    )
    add(
        "preferences_link",
        "The mail links to the preference centre",
        SAMPLE_PREFERENCES_URL in hrefs,
        'Add a link to {{ preferences_url }}, e.g. <a href="{{ preferences_url }}">Choose what '
        "you receive</a>.",
    )
    text = _text_of(parts.html)
    address_lines = [
        " ".join(line.split()) for line in campaign.unit.postal_address.splitlines() if line.strip()
    ]
    missing = [line for line in address_lines if line not in text]
    add(
        "footer_address",
        "The footer has the unit's postal address",
        bool(address_lines) and not missing,
        "Put the unit's postal address in the footer, e.g. {{ unit.postal_address }} "
        f"(missing: {'; '.join(missing) or 'the unit has no postal address'}).",
    )
    english, chinese = UNSUBSCRIBE_EN.search(text), UNSUBSCRIBE_ZH.search(text)
    lacking = [lang for lang, found in (("English", english), ("Chinese", chinese)) if not found]
    add(
        "footer_statement",
        "The footer says how to unsubscribe, in English and Chinese",
        not lacking,
        "Hong Kong's UEMO regulation wants the unsubscribe statement in English and Chinese; "
        f"add it in {' and '.join(lacking)} (e.g. 'unsubscribe' and '取消訂閱').",
    )
    size = len(parts.html.encode("utf-8"))
    add(
        "size",
        "The mail is under 102 KB",
        size < SIZE_LIMIT,
        f"The HTML is {size / 1024:.0f} KB; Gmail clips mail over 102 KB and hides the "
        "footer with the unsubscribe link. Shorten it or link to a web page.",
    )
    images = [] if document is None else document.xpath("//img")
    no_alt = [img.get("src", "(no src)") for img in images if not (img.get("alt") or "").strip()]
    add(
        "images_alt",
        "Images have alt text",
        not no_alt,
        f"Describe each image in its alt attribute: {', '.join(no_alt[:5])}.",
        [{"src": src} for src in no_alt],
    )
    allowed = ("https://", "mailto:", "tel:")
    bad_links = [h for h in hrefs if not h.lower().startswith(allowed)]
    bad_images = [
        img.get("src", "")
        for img in images
        if not img.get("src", "").lower().startswith("https://")
    ]
    bad = bad_links + bad_images
    add(
        "links_https",
        "Links are absolute https",
        not bad,
        f"Use absolute https:// addresses for links and images: {', '.join(bad[:5])}.",
        [{"url": url} for url in bad],
    )
    found = banned_word_findings(campaign, parts)
    acknowledged = campaign.acknowledgements or {}
    open_words = [w for w in found if not (acknowledged.get(w) or {}).get("reason")]
    add(
        "banned_words",
        "No banned words, or each one acknowledged",
        not open_words,
        f"Remove or acknowledge with a reason: {', '.join(open_words)}.",
        [{"word": w, "acknowledged": acknowledged.get(w, {}).get("reason", "")} for w in found],
    )
    return CheckReport(results, sample_label, parts)
