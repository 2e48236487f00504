"""Forms of the DM type pages: parse and label, the rules stay in consent.services."""

from __future__ import annotations

from django import forms

from mlm.forms import Form

NOTICE_HELP = (
    "What kind of marketing this is, in the words people agree to. Changing it later makes a new "
    "version; earlier grants keep the version they agreed to."
)


class DMTypeEditForm(Form):
    name = forms.CharField(max_length=200, help_text="Shown to recipients, e.g. Event invitations.")
    notice_text = forms.CharField(
        label="Notice", widget=forms.Textarea(attrs={"rows": 5}), help_text=NOTICE_HELP
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

    field_order = ["key", "name", "notice_text", "internal_default"]
