"""Form helpers shared by the unit pages: a service's refusal becomes a form error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from mlm.selectors import SYSTEM_ACTOR

T = TypeVar("T")


def bound(form_class: type[forms.BaseForm], request: HttpRequest, **kwargs: Any) -> Any:
    """The form bound to the POST data on a POST, unbound (showing initial values) otherwise."""
    return form_class(request.POST if request.method == "POST" else None, **kwargs)


def submit(form: forms.BaseForm, call: Callable[[dict[str, Any]], T]) -> T | None:
    """Run `call(cleaned_data)` if the bound form is valid and return its result.

    None if the form is unbound or invalid, or if the service refused with a ValidationError:
    its message is then shown as an error of the whole form, so the page says why.
    """
    if not form.is_bound or not form.is_valid():
        return None
    try:
        return call(form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return None


class Form(forms.Form):
    """A form of the unit pages: labels without a trailing colon (Pico puts them above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class AuditFilterForm(Form):
    """The audit log's filters: one member (or the system), one verb, a range of days."""

    actor = forms.ChoiceField(required=False, label="Who")
    verb = forms.ChoiceField(required=False, label="What")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(
        self, *args: Any, members: list[tuple[str, str]], verbs: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone"), (SYSTEM_ACTOR, "System"), *members]
        self.fields["verb"].choices = [("", "Anything"), *((v, v) for v in verbs)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data


class OutboxFilterForm(Form):
    """The Outbox's filters: one campaign, and a part of the recipient's address."""

    campaign = forms.ChoiceField(required=False, label="Campaign")
    address = forms.CharField(required=False, max_length=320, label="Address contains")

    def __init__(self, *args: Any, campaigns: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].choices = [("", "Any campaign"), *campaigns]

    def clean_address(self) -> str:
        return self.cleaned_data["address"].strip()
