"""Forms of the DM type pages: parse and label, the rules stay in consent.services."""

from __future__ import annotations

from django import forms

from mlm.forms import Form

NOTICE_HELP = (
    "What kind of marketing this is, in the words people agree to. Changing it later makes a new "
    "version; earlier grants keep the version they agreed to."
)


CHINESE_HELP = "Optional: recipients who read it see the English text where this is empty."


class DMTypeEditForm(Form):
    name = forms.CharField(max_length=200, help_text="Shown to recipients, e.g. Event invitations.")
    name_zh_hant = forms.CharField(
        label="Name in Traditional Chinese", max_length=200, required=False, help_text=CHINESE_HELP
    )
    name_zh_hans = forms.CharField(
        label="Name in Simplified Chinese", max_length=200, required=False, help_text=CHINESE_HELP
    )
    notice_text = forms.CharField(
        label="Notice", widget=forms.Textarea(attrs={"rows": 5}), help_text=NOTICE_HELP
    )
    notice_text_zh_hant = forms.CharField(
        label="Notice in Traditional Chinese",
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        help_text=CHINESE_HELP,
    )
    notice_text_zh_hans = forms.CharField(
        label="Notice in Simplified Chinese",
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        help_text=CHINESE_HELP,
    )
    internal_default = forms.BooleanField(
        label="Send to internal recipients by default",
        required=False,
        help_text="Staff, students and alumni receive it unless they withdraw. External "
        "recipients always need a grant.",
    )


class DMTypeCreateForm(DMTypeEditForm):
    key = forms.SlugField(
        max_length=60,
        help_text="Short stable name used in imports and reports, e.g. events. It cannot be "
        "changed later.",
    )

    field_order = [
        "key",
        "name",
        "name_zh_hant",
        "name_zh_hans",
        "notice_text",
        "notice_text_zh_hant",
        "notice_text_zh_hans",
        "internal_default",
    ]
