"""Checking one row of an import file in Python: its cells mapped to fields, the address
normalised (fast for plain addresses, by recipients.addresses otherwise), the category, the
lengths and the audience of the list (I3). What needs the whole file is checked in SQL
(recipients.importing.staging)."""

from __future__ import annotations

import functools
import json
import operator

import email_validator
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import EmailSyntaxError, validate_email_domain_name

from recipients.addresses import AddressHasher, InvalidAddress, normalise_address
from recipients.importing.choices import (
    ATTRIBUTE,
    EMAIL,
    FIELDS,
    FIRST_NAME,
    LAST_NAME,
    LIMITS,
    LOCALE,
)
from recipients.importing.limits import ROW_LIMIT
from recipients.models import Audience, Category, ImportJob, ImportMode
from recipients.services import audience_problem

_CATEGORY_WORDS = {c.value: c.value for c in Category} | {
    c.label.lower(): c.value for c in Category
}

_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@functools.lru_cache(maxsize=100_000)
def _plain_domain(domain: str, test_environment: bool, globally_deliverable: bool) -> str | None:
    """The lower-cased domain if email-validator accepts it unchanged as plain ASCII, else None."""
    try:
        info = validate_email_domain_name(
            domain, test_environment=test_environment, globally_deliverable=globally_deliverable
        )
    except EmailSyntaxError:
        return None
    ascii_domain = info["ascii_domain"]
    if info["domain"] != ascii_domain or len(ascii_domain) != len(domain):
        return None
    return ascii_domain.lower()


def normalise_import_address(raw: str) -> str:
    """The same result as recipients.addresses.normalise_address, faster for plain addresses.

    email-validator checks a typical address in tens of microseconds, mostly spent on the domain
    and on Unicode checks that plain ASCII does not need. For an ASCII address with one @, a
    dot-atom local part and a domain email-validator accepts as it is (checked once per domain,
    by email-validator itself), its result is known; anything else goes to email-validator.
    """
    text = raw.strip()
    if (
        text.isascii()
        and len(text) <= EMAIL_MAX_LENGTH
        and text.count("@") == 1
        and '"' not in text
        and "<" not in text
    ):
        local, _, domain = text.partition("@")
        if local and DOT_ATOM_TEXT.match(local):
            plain = _plain_domain(
                domain, email_validator.TEST_ENVIRONMENT, email_validator.GLOBALLY_DELIVERABLE
            )
            if plain is not None:
                if local.lower() in _CASE_INSENSITIVE:
                    local = local.lower()
                return f"{local}@{plain}"
    return normalise_address(text)


# Staged row: line, email, email_hash, first_name, last_name, category, locale, attributes (JSON),
# problem (why the row is rejected, or None), kind (of problem).
StagedRow = tuple[int, str, str | None, str, str, str, str, str, str | None, str | None]


_to_json = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


class RowChecker:
    """Turns the cells of one row into a staged row, with the reason if the row is refused."""

    def __init__(self, job: ImportJob) -> None:
        mapping = list(job.mapping)
        self.width = len(job.columns)
        # Unmapped fields read the empty cell appended to every row (index `width`).
        self.fields = operator.itemgetter(
            *(mapping.index(t) if t in mapping else self.width for t in FIELDS)
        )
        self.attributes = [
            (i, job.columns[i]) for i, target in enumerate(mapping) if target == ATTRIBUTE
        ]
        self.audience = job.recipient_list.audience
        self.opt_out = job.mode == ImportMode.OPT_OUT
        self.default_category = job.default_category or (
            Category.EXTERNAL if self.audience == Audience.EXTERNAL else ""
        )
        self.hash = AddressHasher()
        self.limits = (LIMITS[FIRST_NAME], LIMITS[LAST_NAME], LIMITS[LOCALE])
        self._audience_clash: dict[tuple[str, str], bool] = {}

    def _cells(self, cells: list[str]) -> tuple[str, str, str, str, str, dict[str, str]]:
        cells.append("")
        email, first, last, category, locale = (c.strip() for c in self.fields(cells))
        attributes = {key: v for i, key in self.attributes if (v := cells[i].strip())}
        return email, first, last, category, locale, attributes

    def check(self, line: int, cells: list[str]) -> StagedRow | None:
        """The staged row, or None for a row without any content (skipped silently)."""
        joined = "\x1f".join(cells)
        if "\x00" in joined:
            # PostgreSQL text cannot hold NUL: the row is refused, its cells kept without it.
            problem = "The row holds a NUL character (binary data, not text)."
            return self._refused(line, [c.replace("\x00", "") for c in cells], problem)
        if len(joined) > ROW_LIMIT and (size := len(joined) - len(cells) + 1) > ROW_LIMIT:
            problem = f"The row holds {size:,} characters; a row holds at most {ROW_LIMIT:,}."
            return self._refused(line, [c[: LIMITS[ATTRIBUTE]] for c in cells], problem)
        width = self.width
        if len(cells) != width:
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            elif any(c.strip() for c in cells[width:]):
                problem = "The row has more cells than the file has columns."
                return self._refused(line, cells[:width], problem)
            else:
                cells = cells[:width]
        raw_email, first, last, category_text, locale, attributes = self._cells(cells)
        attributes_json = _to_json(attributes) if attributes else "{}"
        if not (raw_email or first or last or category_text or locale or attributes):
            return None

        def refuse(kind: str, problem: str) -> StagedRow:
            fields = (first, last, category_text, locale, attributes_json)
            return (line, raw_email, None, *fields, problem, kind)

        if not raw_email:
            return refuse("invalid", "The address is empty.")
        if len(raw_email) > LIMITS[EMAIL]:
            return refuse("invalid", f"The address is longer than {LIMITS[EMAIL]} characters.")
        try:
            email = normalise_import_address(raw_email)
        except InvalidAddress as error:
            return refuse("invalid", str(error))
        digest = self.hash(email)
        if self.opt_out:
            # A withdrawal is always allowed: only the address matters.
            return (line, email, digest, "", "", "", "", "{}", None, None)
        if category_text:
            category = _CATEGORY_WORDS.get(category_text.lower())
            if category is None:
                choices = ", ".join(Category.values)
                return refuse(
                    "category", f"Unknown category {category_text!r}: use one of {choices}."
                )
        else:
            category = self.default_category
            if not category:
                return refuse("category", "The category is empty and no default was chosen.")
        max_first, max_last, max_locale = self.limits
        if len(first) > max_first or len(last) > max_last or len(locale) > max_locale:
            for value, name, limit in (
                (first, "The first name", max_first),
                (last, "The last name", max_last),
                (locale, "The language", max_locale),
            ):
                if len(value) > limit:
                    return refuse("too_long", f"{name} is longer than {limit} characters.")
        for key, value in attributes.items():
            if len(value) > LIMITS[ATTRIBUTE]:
                return refuse("too_long", f"{key} is longer than {LIMITS[ATTRIBUTE]} characters.")
        # audience_problem (I3) depends on the category and the address's domain only: ask it
        # once per pair, and again with the real address for the message when there is one.
        domain = email[email.rindex("@") + 1 :]
        clash = self._audience_clash.get((domain, category))
        if clash is None:
            probe = audience_problem(email=f"x@{domain}", category=category, audience=self.audience)
            clash = self._audience_clash[(domain, category)] = probe is not None
        if clash:
            problem = audience_problem(email=email, category=category, audience=self.audience)
            return refuse("audience", problem or "The address is of the other audience.")
        return (line, email, digest, first, last, category, locale, attributes_json, None, None)

    def _refused(self, line: int, cells: list[str], problem: str) -> StagedRow:
        email, first, last, category, locale, attributes = self._cells(cells)
        fields = (first, last, category, locale, _to_json(attributes))
        return (line, email, None, *fields, problem, "invalid")
