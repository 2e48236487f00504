"""Forms of the recipient and list pages: parse and label; the rules stay in the services."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms

from consent.models import DMType
from mlm.forms import Form
from mlm.models import SenderUnit
from recipients.addresses import InvalidAddress, normalise_address
from recipients.models import Audience, Category, RecipientList, RecipientStatus


class SearchForm(Form):
    """Search words; subclasses add filters. Invalid filters are ignored, valid ones kept."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Address or name", "autocomplete": "off"}
        ),
        help_text="Part of the address, the first or the last name; any case.",
    )

    def filters(self) -> dict[str, Any]:
        """The valid, non-empty values, named as the selector's arguments."""
        self.is_valid()
        names = {"list": "recipient_list"}
        return {
            names.get(name, name): value
            for name, value in getattr(self, "cleaned_data", {}).items()
            if value not in (None, "")
        }

    def query_string(self) -> str:
        """The search as a query string, for the links to other pages of results."""
        if not self.is_bound:
            return ""
        return urlencode([(name, self.data[name]) for name in self.fields if self.data.get(name)])


class RecipientSearchForm(SearchForm):
    list = forms.ModelChoiceField(
        queryset=RecipientList.objects.none(),
        required=False,
        to_field_name="code",
        empty_label="Any list",
        label="On list",
    )
    category = forms.ChoiceField(choices=[("", "Any category"), *Category.choices], required=False)
    status = forms.ChoiceField(
        choices=[("", "Any status"), *RecipientStatus.choices], required=False
    )
    dm_type = forms.ModelChoiceField(
        queryset=DMType.objects.none(),
        required=False,
        to_field_name="code",
        empty_label="Any",
        label="Would receive DM type",
        help_text="Active, not suppressed, and consent as the rules of the DM type need.",
    )

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["list"].queryset = RecipientList.objects.for_unit(unit)
        self.fields["dm_type"].queryset = DMType.objects.for_unit(unit)

    FILTERS = ("list", "category", "status", "dm_type")

    @property
    def filter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.FILTERS]

    @property
    def has_filters(self) -> bool:
        return self.is_bound and any(self.data.get(name) for name in self.FILTERS)


class ListCreateForm(Form):
    name = forms.CharField(max_length=200)
    audience = forms.ChoiceField(
        choices=Audience.choices,
        widget=forms.RadioSelect,
        help_text="A list holds recipients of one audience only; it cannot change later.",
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text="Optional."
    )


class AddressField(forms.CharField):
    """A mail address in its normal form; says why when it is not one."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 320)
        kwargs.setdefault("widget", forms.EmailInput(attrs={"autocomplete": "off"}))
        super().__init__(**kwargs)

    def clean(self, value: Any) -> str:
        value = super().clean(value)
        try:
            return normalise_address(value)
        except InvalidAddress as error:
            raise forms.ValidationError(str(error)) from None


class ListAddRecipientForm(Form):
    email = AddressField(label="Address")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    category = forms.ChoiceField(choices=Category.choices)

    def __init__(self, *args: Any, recipient_list: RecipientList, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = Category.of_audience(recipient_list.audience)
        self.fields["category"].choices = [c for c in Category.choices if c[0] in allowed]
        self.fields[
            "category"
        ].help_text = f"This is an {recipient_list.get_audience_display().lower()} list."


class DMTypeChoiceField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, obj: DMType) -> str:
        return f"{obj.name} (archived)" if obj.is_archived else obj.name


class GrantForm(Form):
    dm_types = DMTypeChoiceField(
        queryset=DMType.objects.none(),
        to_field_name="code",
        label="DM types granted",
        error_messages={"required": "Choose the DM types the person agreed to."},
    )
    evidence = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Where and how the person agreed, e.g. “Signed the consent form at the open "
        "day, 12 June 2025, form kept in the office”. It is kept with the grant for good.",
        error_messages={
            "required": "Evidence is required: say where and how the person agreed. "
            "Nothing was recorded."
        },
    )

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        in_use = DMType.objects.for_unit(unit).filter(archived_at__isnull=True)
        self.fields["dm_types"].queryset = in_use


class WithdrawForm(Form):
    everything = forms.BooleanField(
        required=False,
        label="Every DM type of this unit, now and later",
        help_text="Like “unsubscribe from all”: it also covers DM types created later.",
    )
    dm_types = DMTypeChoiceField(
        queryset=DMType.objects.none(),
        to_field_name="code",
        required=False,
        label="Or these DM types",
    )
    evidence = forms.CharField(
        label="Note",
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Optional: how the person asked, e.g. “Phone call to the office, 3 June”.",
    )

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dm_types"].queryset = DMType.objects.for_unit(unit)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("everything") and not data.get("dm_types"):
            raise forms.ValidationError("Choose the DM types to withdraw, or every DM type.")
        return data


class EraseForm(Form):
    confirm = forms.BooleanField(
        label="I understand that this person's data is removed for good",
        error_messages={"required": "Tick the box to confirm the erasure."},
    )
