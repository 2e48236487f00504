"""Texts kept in English, Traditional and Simplified Chinese: which version a reader gets."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import translation

# The field suffix of each Chinese version; English is the field itself, always filled.
SUFFIXES = {"zh-hant": "_zh_hant", "zh-hans": "_zh_hans"}


def language_of(value: str | None) -> str:
    """The supported language closest to `value` (zh_Hant, zh-HK…), English when none is."""
    if value:
        try:
            return translation.get_supported_language_variant(value.replace("_", "-").lower())
        except LookupError:
            pass
    return settings.LANGUAGE_CODE


def text_in(obj: Any, field: str, lang: str | None = None) -> str:
    """`obj.<field>` in `lang` (default: the active language), the English text if it has none."""
    suffix = SUFFIXES.get(language_of(lang or translation.get_language()))
    if suffix:
        value = getattr(obj, field + suffix, "")
        if value and value.strip():
            return value
    return getattr(obj, field)
