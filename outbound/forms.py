"""The form of the endpoints page: HTTP only (the service checks the URL)."""

from __future__ import annotations

from django import forms

from mlm.forms import Form
from outbound.models import EventType


class EndpointForm(Form):
    url = forms.URLField(
        label="URL", max_length=500, assume_scheme="https", help_text="https:// only."
    )
    description = forms.CharField(label="Description", max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=EventType.choices,
        initial=EventType.values,
        widget=forms.CheckboxSelectMultiple,
    )
