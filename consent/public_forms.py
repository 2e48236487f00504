"""Forms of the public recipient pages (HTTP parsing only; the services decide)."""

from __future__ import annotations

from collections.abc import Sequence

from django import forms
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from consent.models import DMType
from recipients.addresses import InvalidAddress, is_internal_address, normalise_address

SCOPE_DM_TYPE = "dm_type"
SCOPE_UNIT = "unit"
SCOPE_INSTITUTION = "institution"


class UnsubscribeForm(forms.Form):
    """Which of the three buttons of the unsubscribe page was pressed."""

    scope = forms.ChoiceField(
        choices=[(SCOPE_DM_TYPE, ""), (SCOPE_UNIT, ""), (SCOPE_INSTITUTION, "")]
    )

    def __init__(self, *args, has_dm_type: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.has_dm_type = has_dm_type

    def clean_scope(self) -> str:
        scope = self.cleaned_data["scope"]
        if scope == SCOPE_DM_TYPE and not self.has_dm_type:
            raise forms.ValidationError("This link names no DM type.")
        return scope


class DMTypeChoiceForm(forms.Form):
    """Choose among given DM types by code (undo, preference centre)."""

    dm = forms.MultipleChoiceField(required=False)

    def __init__(self, *args, dm_types: Sequence[DMType], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dm_types = {str(t.code): t for t in dm_types}
        self.fields["dm"].choices = [(code, t.local_name) for code, t in self.dm_types.items()]

    def chosen(self) -> list[DMType]:
        return [self.dm_types[code] for code in self.cleaned_data["dm"]]


class UndoForm(DMTypeChoiceForm):
    """Undo an unsubscribe: the DM types to grant again, and whether it was everything."""

    scope = forms.ChoiceField(
        choices=[(SCOPE_DM_TYPE, ""), (SCOPE_UNIT, ""), (SCOPE_INSTITUTION, "")]
    )


class SubscribeForm(DMTypeChoiceForm):
    """The public double opt-in form of a unit; nothing is ticked in advance (I2)."""

    email = forms.CharField(label=_("Email address"), max_length=320)
    first_name = forms.CharField(label=_("Given name"), max_length=150)
    last_name = forms.CharField(label=_("Family name"), max_length=150, required=False)
    # A honeypot: hidden from people by CSS and from screen readers; bots fill it in.
    website = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, unit, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unit = unit
        self.fields["dm"].required = True
        self.fields["dm"].error_messages["required"] = _("Tick at least one kind of mail.")

    def statement(self) -> str:
        """The consent statement above the boxes, exactly as shown (it becomes evidence)."""
        return gettext(
            "I would like to receive the kinds of mail I tick below from %(unit)s. I can "
            "unsubscribe at any time with the link in every mail."
        ) % {"unit": self.unit.local_name}

    def clean_email(self) -> str:
        try:
            address = normalise_address(self.cleaned_data["email"])
        except InvalidAddress:
            raise forms.ValidationError(gettext("Enter a valid email address.")) from None
        if is_internal_address(address):
            # Decided by the domain alone, so the answer says nothing about known addresses.
            raise forms.ValidationError(
                gettext(
                    "Addresses of %(institution)s cannot subscribe here: the unit manages "
                    "them. Use the preference centre link in any mail from %(unit)s."
                )
                % {"institution": settings.MLM_INSTITUTION_NAME, "unit": self.unit.local_name}
            )
        return address

    def is_bot(self) -> bool:
        return bool(self.cleaned_data.get("website"))

    def wording(self) -> str:
        """What the person saw and ticked, in the active language, for the grant's evidence."""
        lines = [self.statement()]
        for dm_type in self.chosen():
            notice = dm_type.current_notice
            version = f" (notice v{notice.version})" if notice else ""
            text = f": {notice.local_text}" if notice else ""
            lines.append(f"[x] {dm_type.local_name}{version}{text}")
        return "\n".join(lines)
