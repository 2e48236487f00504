"""What a person chooses for an import file, and the checks of those choices: the use of each
column (guessed from its header) and the bounds of each field, the encoding and separator it is
read with, what the import does, its DM types and the attestation of consent (I2, I3)."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError

from consent.models import DMType
from mlm.models import Role
from mlm.scoping import require_role
from recipients.models import Audience, Category, ImportJob, ImportMode
from recipients.services import FIELD_LIMITS

ATTESTATION = "I confirm these people gave explicit consent to the DM types ticked."

# What a column can become. Any column that is not one of the fields becomes an attribute
# (personalisation data) unless the person chooses to ignore it.
EMAIL, FIRST_NAME, LAST_NAME, CATEGORY, LOCALE = (
    "email",
    "first_name",
    "last_name",
    "category",
    "locale",
)
ATTRIBUTE, IGNORE = "attribute", ""
TARGETS = {
    EMAIL: "Email address",
    FIRST_NAME: "First name",
    LAST_NAME: "Last name",
    CATEGORY: "Category",
    LOCALE: "Language (locale)",
    ATTRIBUTE: "Attribute",
    IGNORE: "Ignore",
}
LIMITS = {EMAIL: 320, **FIELD_LIMITS, CATEGORY: 30, ATTRIBUTE: 1000}
ATTRIBUTE_KEY_LIMIT = 100

# Header names we recognise, lower-cased and without spaces, dashes or underscores.
_HEADER_WORDS = {
    EMAIL: {
        "email", "mail", "emailaddress", "mailaddress", "emails",
        "電郵", "电邮", "電郵地址", "电邮地址", "電子郵件", "电子邮件",
        "電子郵箱", "电子邮箱", "郵箱", "邮箱",
    },
    FIRST_NAME: {"firstname", "givenname", "forename", "first", "given", "名", "名字"},
    LAST_NAME: {"lastname", "surname", "familyname", "last", "family", "姓", "姓氏"},
    CATEGORY: {"category", "type", "affiliation", "audience", "role", "類別", "类别", "身份"},
    LOCALE: {"locale", "language", "lang", "語言", "语言"},
}  # fmt: skip

FIELDS = (EMAIL, FIRST_NAME, LAST_NAME, CATEGORY, LOCALE)

# The encodings a person can choose, and how each is named on the page.
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with byte order mark",
    "utf-16": "UTF-16 (Excel “Unicode text”)",
    "utf-16-le": "UTF-16 little-endian",
    "utf-16-be": "UTF-16 big-endian",
    "big5hkscs": "Big5 (Traditional Chinese, with HKSCS)",
    "gb18030": "GB18030 (Simplified Chinese, also GBK and GB2312)",
    "cp1252": "Windows-1252 (Western European)",
}
ENCODING_CHOICES = ["utf-8", "utf-16", "big5hkscs", "gb18030", "cp1252"]
DELIMITERS = {",": "Comma", ";": "Semicolon", "\t": "Tab"}


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-.:]+", "", name).lower()


def guess_mapping(columns: list[str], preview: list[list[str]], has_header: bool) -> list[str]:
    """What each column becomes, guessed from its name or, without a header, from its cells."""
    mapping: list[str] = []
    for index, name in enumerate(columns):
        key = _header_key(name) if has_header else ""
        target = next((t for t, words in _HEADER_WORDS.items() if key in words), None)
        if target is None and not has_header:
            cells = [row[index] for row in preview if index < len(row) and row[index].strip()]
            if cells and all("@" in c for c in cells):
                target = EMAIL
        if target in mapping:
            target = None
        mapping.append(target or (ATTRIBUTE if has_header else IGNORE))
    return mapping


def column_names(first_row: list[str], has_header: bool, width: int) -> list[str]:
    """The names of the columns: from the header (cut to an attribute key's length), or numbered."""
    if has_header:
        names = [c.strip()[:ATTRIBUTE_KEY_LIMIT] for c in first_row]
        names += [""] * (width - len(names))
        return [n or f"Column {i}" for i, n in enumerate(names, start=1)]
    return [f"Column {i}" for i in range(1, width + 1)]


def check_mapping(job: ImportJob, mapping: list[str]) -> None:
    """Refuse a mapping that does not say what every column becomes, or names no single address."""
    if len(mapping) != len(job.columns):
        raise ValidationError("Say what every column of the file becomes.")
    for target in mapping:
        if target not in TARGETS:
            raise ValidationError(f"Unknown column use {target!r}.")
    if mapping.count(EMAIL) != 1:
        raise ValidationError("Choose exactly one column as the email address.")
    for target in TARGETS:
        if target not in (ATTRIBUTE, IGNORE) and mapping.count(target) > 1:
            raise ValidationError(f"Only one column can be the {TARGETS[target].lower()}.")


def check_choices(
    *,
    job: ImportJob,
    mode: str,
    dm_types: list[DMType],
    attested: bool,
    evidence: str,
    default_category: str,
    mapping: list[str],
    by: AbstractBaseUser | None,
) -> None:
    """Refuse choices that would break I2 or I3: a grant needs named DM types, evidence, the
    administrator role and, on an external list, the importer's attestation."""
    audience = job.recipient_list.audience
    if job.mode == ImportMode.SYNC and mode != ImportMode.SYNC:
        raise ValidationError("This file was uploaded for a directory sync.")
    if mode == ImportMode.SYNC and job.mode != ImportMode.SYNC:
        raise ValidationError("A directory sync starts from the list's sync page.")
    if mode not in ImportMode.values:
        raise ValidationError("Choose what the import does.")
    if default_category and default_category not in Category.of_audience(audience):
        raise ValidationError(
            f"{Category(default_category).label} is not a category of an {audience} list."
        )
    needs_category = mode != ImportMode.OPT_OUT and audience == Audience.INTERNAL
    if needs_category and CATEGORY not in mapping and not default_category:
        raise ValidationError(
            "Internal recipients are staff, students or alumni: choose the column that says "
            "which, or a category for everyone in the file."
        )
    for dm_type in dm_types:
        if dm_type.unit_id != job.unit_id:
            raise ValidationError(f"The DM type {dm_type.name!r} belongs to another unit.")
    if mode in (ImportMode.ADD, ImportMode.SYNC) and dm_types:
        raise ValidationError(
            "Adding to the list grants nothing: untick the DM types, or choose to grant them."
        )
    if mode == ImportMode.OPT_OUT and not dm_types:
        raise ValidationError("Tick the DM types to withdraw.")
    if mode in (ImportMode.GRANT, ImportMode.SYNC) and by is not None and by.is_authenticated:
        try:
            require_role(job.unit, by, Role.ADMIN)
        except PermissionDenied:
            raise ValidationError(
                "Granting consent and directory syncs need the administrator role."
            ) from None
    if mode != ImportMode.GRANT:
        return
    if not dm_types:
        raise ValidationError(
            "Tick the DM types the people agreed to; nothing is granted by default."
        )
    archived = [d.name for d in dm_types if d.is_archived]
    if archived:
        raise ValidationError(f"Archived DM types cannot be granted: {', '.join(archived)}.")
    if not evidence.strip():
        raise ValidationError(
            "Say where and how the people agreed (e.g. 'Open-day registration form, consent "
            "clause v3, June 2025'): the evidence is stored on every grant."
        )
    if audience == Audience.EXTERNAL and not attested:
        raise ValidationError(
            "An external list grants consent only if you confirm that these people gave "
            "explicit consent to the DM types ticked."
        )
