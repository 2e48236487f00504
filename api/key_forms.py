"""The form that makes an API key on the unit's API keys page."""

from __future__ import annotations

from django import forms

from api.models import ApiRole
from mlm.forms import Form


class ApiKeyCreateForm(Form):
    name = forms.CharField(max_length=100, help_text="The system that will use it, e.g. CRM.")
    role = forms.ChoiceField(choices=ApiRole.choices, initial=ApiRole.CONSENT_WRITER)
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        help_text="Empty: until revoked. In the unit's time zone, e.g. 2027-06-30 18:00.",
    )
