"""Forms of the campaign pages: HTTP parsing only; services decide."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from campaigns.models import BodyFormat, Campaign, Layout, SenderIdentity
from campaigns.starter import STARTER_LAYOUT_NAME
from consent.models import DMType
from mlm.forms import Form
from mlm.models import SenderUnit
from recipients.models import Audience, RecipientList, Segment

CODE_AREA = {"rows": 14, "spellcheck": "false", "class": "code"}


class CampaignForm(Form):
    """A campaign's fields; choices are the unit's own (scoped querysets)."""

    name = forms.CharField(max_length=200, help_text="For your unit only; recipients never see it.")
    dm_type = forms.ModelChoiceField(queryset=DMType.objects.none(), label="DM type")
    audience = forms.ChoiceField(choices=Audience.choices)
    lists = forms.ModelMultipleChoiceField(
        queryset=RecipientList.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Lists of the campaign's audience only; or choose a segment below.",
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.none(),
        required=False,
        empty_label="No segment: the lists above",
        help_text="Instead of lists: a saved segment of the campaign's audience. Its conditions "
        "are read when sending starts.",
    )
    identity = forms.ModelChoiceField(queryset=SenderIdentity.objects.none(), label="From")
    reply_to = forms.EmailField(required=False, label="Reply-To")
    subject = forms.CharField(
        max_length=1000, help_text='Jinja2, e.g. {{ first_name|default("Friend") }}, …'
    )
    layout = forms.ModelChoiceField(queryset=Layout.objects.none(), required=False)
    body_format = forms.ChoiceField(
        choices=BodyFormat.choices,
        initial=BodyFormat.MARKDOWN,
        widget=forms.RadioSelect(attrs={"class": "body-format"}),
        label="Write the body in",
        help_text="The body goes into the layout, whose footer carries the unsubscribe links. "
        "Switching keeps the text as it is: convert it yourself.",
    )
    html_body = forms.CharField(
        widget=forms.Textarea(attrs={**CODE_AREA, "class": "code body-editor"}),
        label="Body",
        help_text="Markdown: **bold**, *italic*, [a link](https://…), - a list, # a heading. "
        "Every format takes Jinja2 placeholders: {{ first_name }}, last_name, email, category, "
        "attributes; unit, campaign, dm_type; unsubscribe_url, preferences_url, web_version_url. "
        "Rich text keeps paragraphs, headings, lists, links and emphasis only.",
    )
    text_body = forms.CharField(
        widget=forms.Textarea(attrs={**CODE_AREA, "rows": 6}),
        required=False,
        label="Text body",
        help_text="Optional: generated from the HTML when empty.",
    )

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dm_type"].queryset = DMType.objects.for_unit(unit).filter(
            archived_at__isnull=True
        )
        self.fields["lists"].queryset = RecipientList.objects.for_unit(unit)
        self.fields["segment"].queryset = Segment.objects.for_unit(unit)
        # Identities waiting for operations are not offered: mail cannot go out as them yet.
        self.fields["identity"].queryset = SenderIdentity.objects.for_unit(unit).usable()
        layouts = Layout.objects.for_unit(unit).filter(archived_at__isnull=True)
        self.fields["layout"].queryset = layouts
        # A new draft starts in the starter layout, whose footer passes the content checks.
        starter = layouts.filter(name=STARTER_LAYOUT_NAME).first()
        if starter is not None and "layout" not in self.initial:
            self.fields["layout"].initial = starter.pk
        self.fields["lists"].label_from_instance = lambda rl: (
            f"{rl.name} ({rl.get_audience_display().split(' (')[0].lower()})"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("lists") and not data.get("segment") and "lists" not in self.errors:
            self.add_error("lists", "Choose at least one list, or a segment.")
        return data

    @classmethod
    def initial_for(cls, campaign: Campaign) -> dict[str, Any]:
        return {
            "name": campaign.name,
            "dm_type": campaign.dm_type_id,
            "audience": campaign.audience,
            "lists": list(campaign.lists.values_list("pk", flat=True)),
            "segment": campaign.segment_id,
            "identity": campaign.identity_id,
            "reply_to": campaign.reply_to,
            "subject": campaign.subject,
            "layout": campaign.layout_id,
            "body_format": campaign.body_format,
            "html_body": campaign.html_body,
            "text_body": campaign.text_body,
        }


class PreviewForm(Form):
    """The live preview pane reads the unsaved fields it needs (no validation of the rest)."""

    subject = forms.CharField(required=False)
    body_format = forms.ChoiceField(choices=BodyFormat.choices, required=False)
    html_body = forms.CharField(required=False)
    text_body = forms.CharField(required=False)
    layout = forms.ModelChoiceField(queryset=Layout.objects.none(), required=False)
    dm_type = forms.ModelChoiceField(queryset=DMType.objects.none(), required=False)
    name = forms.CharField(required=False)

    def __init__(self, *args: Any, unit: SenderUnit, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["layout"].queryset = Layout.objects.for_unit(unit)
        self.fields["dm_type"].queryset = DMType.objects.for_unit(unit)


class LayoutForm(Form):
    name = forms.CharField(max_length=200)
    html = forms.CharField(
        widget=forms.Textarea(attrs={**CODE_AREA, "rows": 24}),
        label="HTML",
        help_text="Jinja2. Put {{ content }} where the body goes; the footer needs the unit's "
        "postal address ({{ unit.postal_address }}) and links to {{ unsubscribe_url }} and "
        "{{ preferences_url }}, with the statement in English and Chinese. The link to the "
        "mail's web version goes at the top unless the layout places {{ web_version_url }} "
        'itself, e.g. {% if web_version_url %}<a href="{{ web_version_url }}">'
        "{{ web_version_label }}</a>{% endif %} (empty when the unit turned web versions off).",
    )


class IdentityRequestForm(Form):
    name = forms.CharField(
        max_length=200, label="Display name", help_text="e.g. Faculty of Engineering."
    )
    email = forms.EmailField(
        max_length=320,
        label="From address",
        help_text="On a domain operations sign for; usable at once when its DNS records are "
        "published, otherwise after operations approve it.",
    )
    reply_to = forms.EmailField(max_length=320, required=False, label="Reply-To")


class ReviewForm(Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Required when you reject: the editors read it.",
    )


class ScheduleForm(Form):
    when = forms.ChoiceField(
        choices=[("now", "Send now"), ("later", "Send at a time")],
        widget=forms.RadioSelect,
        initial="now",
        label="When",
    )
    at = forms.DateTimeField(
        required=False,
        label="Date and time",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        help_text="In the unit's time zone.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("when") == "later" and not data.get("at"):
            self.add_error("at", "Choose the date and time to send at.")
        return data


class AcknowledgeForm(Form):
    word = forms.CharField(max_length=200, widget=forms.HiddenInput)
    reason = forms.CharField(max_length=500, label="Why it is acceptable here")


class TestSendForm(Form):
    recipient = forms.UUIDField(required=False, widget=forms.HiddenInput)


class UnitSettingsForm(Form):
    allow_self_approval = forms.BooleanField(
        required=False, help_text="An approver may approve a campaign they wrote themselves."
    )
    tracking_enabled = forms.BooleanField(
        required=False,
        label="Track opens and clicks",
        help_text="Off by default. When on, opens and clicks of the unit's mail are tracked "
        "(where the mail backend can) and the preference centre tells recipients so.",
    )
    web_version_enabled = forms.BooleanField(
        required=False,
        label="Web versions",
        help_text="On by default. Every mail links to its web version (“View this mail in "
        "your browser”); turned off, new mails have no such link and the links in mails already "
        "sent show that the link does not work.",
    )
    frequency_cap_mails = forms.IntegerField(
        min_value=0,
        max_value=1000,
        label="Frequency cap: at most this many DM mails per recipient",
        help_text="0: no cap.",
    )
    frequency_cap_days = forms.IntegerField(min_value=1, max_value=365, label="…per this many days")
    banned_words = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10}),
        required=False,
        help_text="One word or phrase per line. The content check finds them in the subject, "
        "the HTML and the text; an editor may acknowledge a finding with a reason.",
    )
    complaint_rate_limit = forms.DecimalField(
        required=False,
        max_digits=5,
        decimal_places=3,
        label="Pause a campaign whose complaint rate passes (%)",
        help_text="After 1,000 attempts. At most 0.3%, the institution's ceiling; lower pauses "
        "sooner. Empty: unchanged.",
    )
    hard_bounce_rate_limit = forms.DecimalField(
        required=False,
        max_digits=5,
        decimal_places=3,
        label="Pause a campaign whose hard-bounce rate passes (%)",
        help_text="After 1,000 attempts. At most 5%, the institution's ceiling; lower pauses "
        "sooner. Empty: unchanged.",
    )
    mail_backend = forms.ChoiceField(
        required=False,
        label="Mail backend",
        help_text="Where the unit's campaigns are handed over: the default, or another backend "
        "operations configured (an ESP signs the mail itself; our DKIM key signs on SMTP).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not settings.MLM_MAIL_BACKENDS:  # nothing to choose: every unit uses the default
            del self.fields["mail_backend"]
            return
        # The configured names only (settings.MLM_MAIL_BACKENDS): anything else is refused.
        self.fields["mail_backend"].choices = [
            ("", "Default"),
            *((name, name) for name in settings.MLM_MAIL_BACKENDS),
        ]
