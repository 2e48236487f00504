"""The public pages speak English, Traditional and Simplified Chinese from catalogues compiled
into the repository (CI has no gettext): every message is translated, and the .mo files say
what the .po files say."""

from __future__ import annotations

import ast
import gettext
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

LOCALES = ["zh_Hant", "zh_Hans"]


def po_entries(path: Path) -> list[dict]:
    """msgctxt, msgid, msgid_plural and msgstr of each entry of a .po file (no library)."""
    entries, entry, key = [], {}, None
    for line in [*path.read_text().splitlines(), ""]:
        if not line.strip():
            if entry:
                entries.append(entry)
            entry, key = {}, None
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[key] += ast.literal_eval(line)
        else:
            key, _, rest = line.partition(" ")
            entry[key] = ast.literal_eval(rest)
    return [e for e in entries if e.get("msgid")]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_and_compiled(locale):
    folder = Path(settings.LOCALE_PATHS[0]) / locale / "LC_MESSAGES"
    entries = po_entries(folder / "django.po")
    assert len(entries) > 50
    with (folder / "django.mo").open("rb") as mo:
        catalog = gettext.GNUTranslations(mo)
    for entry in entries:
        msgid = entry["msgid"]
        if "msgctxt" in entry:
            msgid = f"{entry['msgctxt']}\x04{msgid}"
        if "msgid_plural" in entry:
            translated = entry["msgstr[0]"]
            assert translated, f"{locale}: {entry['msgid']!r} is not translated"
            assert catalog.ngettext(msgid, entry["msgid_plural"], 2) == translated, msgid
        else:
            assert entry["msgstr"], f"{locale}: {entry['msgid']!r} is not translated"
            assert catalog.gettext(msgid) == entry["msgstr"], (
                f"{locale}: .mo is stale for {msgid!r}"
            )


def test_django_picks_the_catalogues_up():
    with translation.override("zh-hant"):
        assert _("Unsubscribe") == "取消訂閱"
    with translation.override("zh-hans"):
        assert _("Unsubscribe") == "退订"
    with translation.override("en"):
        assert _("Unsubscribe") == "Unsubscribe"
