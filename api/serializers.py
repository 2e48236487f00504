"""What the consent and recipient endpoints read and answer."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.fields import AddressField, AttributesField
from consent.models import Action
from consent.selectors import DMTypeState
from recipients.models import Category, Recipient

# A consent's moment may run ahead of our clock by this much (another system's clock).
CLOCK_SKEW = timedelta(minutes=5)


class EvidenceSerializer(serializers.Serializer):
    source_system = serializers.CharField(
        max_length=200, help_text="The system that collected it, e.g. Alumni portal."
    )
    timestamp = serializers.DateTimeField(help_text="When the person agreed or refused.")
    form_text = serializers.CharField(
        max_length=5000,
        required=False,
        allow_blank=True,
        help_text="The consent wording as the person saw it.",
    )
    form_url = serializers.URLField(
        max_length=1000, required=False, allow_blank=True, help_text="Where the form is."
    )
    ip_address = serializers.IPAddressField(
        required=False, allow_null=True, help_text="The person's address, not the caller's."
    )
    user_agent = serializers.CharField(max_length=500, required=False, allow_blank=True)
    notice_version = serializers.IntegerField(
        min_value=1,
        max_value=1_000_000,
        required=False,
        allow_null=True,
        help_text="The DM type's notice version the person was shown; required for a grant.",
    )

    def validate_timestamp(self, value):
        if value > timezone.now() + CLOCK_SKEW:
            raise serializers.ValidationError("The timestamp is in the future.")
        return value


class ConsentSerializer(serializers.Serializer):
    email = AddressField()
    action = serializers.ChoiceField(choices=Action.choices)
    dm_type = serializers.SlugField(
        max_length=60,
        required=False,
        allow_null=True,
        help_text="The DM type's key. A withdrawal without one withdraws every DM type.",
    )
    category = serializers.ChoiceField(
        choices=Category.choices,
        required=False,
        help_text="For a new recipient: staff, student, alumni or external (the default outside "
        "the institution's domains). Fixes the audience; never changed here.",
    )
    evidence = EvidenceSerializer()

    def validate(self, data):
        if data["action"] == Action.GRANT:
            evidence = data["evidence"]
            errors = {}
            if not data.get("dm_type"):
                errors["dm_type"] = "A grant names one DM type; 'all' is never implied."
            if evidence.get("notice_version") is None:
                errors["evidence.notice_version"] = "A grant names the notice version shown."
            if not (evidence.get("form_text") or "").strip() and not evidence.get("form_url"):
                errors["evidence.form_text"] = (
                    "A grant needs the form's wording (form_text) or its address (form_url)."
                )
            if errors:
                raise serializers.ValidationError(errors)
        return data


class ConsentAnswerSerializer(serializers.Serializer):
    recipient = serializers.UUIDField(help_text="The recipient's code.")
    recipient_created = serializers.BooleanField()
    action = serializers.ChoiceField(choices=Action.choices)
    dm_type = serializers.CharField(allow_null=True)
    notice_version = serializers.IntegerField(allow_null=True)
    recorded_at = serializers.DateTimeField()
    suppressed = serializers.BooleanField(
        help_text="The address is suppressed (bounce, complaint, erasure, opt-out): no mail goes "
        "to it whatever its consent."
    )


class DMTypeStateSerializer(serializers.Serializer):
    dm_type = serializers.CharField(source="dm_type.key")
    name = serializers.CharField(source="dm_type.name")
    subscribed = serializers.BooleanField()
    by_default = serializers.BooleanField(
        help_text="Internal recipient receiving an internal-default DM type without a grant."
    )
    last_action = serializers.CharField(source="event.action", allow_null=True, default=None)
    channel = serializers.CharField(source="event.channel", allow_null=True, default=None)
    since = serializers.DateTimeField(source="event.created_at", allow_null=True, default=None)
    notice_version = serializers.IntegerField(
        source="event.notice.version", allow_null=True, default=None
    )


def dm_type_states(states: list[DMTypeState]) -> list[dict]:
    return DMTypeStateSerializer(states, many=True).data


class RecipientSerializer(serializers.ModelSerializer):
    email = AddressField()
    audience = serializers.CharField(read_only=True)
    attributes = AttributesField(required=False)
    category = serializers.ChoiceField(choices=Category.choices)

    class Meta:
        model = Recipient
        fields = [
            "code",
            "email",
            "category",
            "audience",
            "first_name",
            "last_name",
            "locale",
            "attributes",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["code", "status", "created_at", "updated_at"]
        # Upsert by address: the unique address per unit is the service's business.
        validators = []


class RecipientWithConsentSerializer(RecipientSerializer):
    consent = serializers.SerializerMethodField()

    class Meta(RecipientSerializer.Meta):
        fields = [*RecipientSerializer.Meta.fields, "consent"]

    @extend_schema_field(DMTypeStateSerializer(many=True))
    def get_consent(self, recipient: Recipient) -> list[dict]:
        return dm_type_states(self.context["states"])


class LookupSerializer(serializers.Serializer):
    email = AddressField(help_text="Sent in the body, never in the URL: URLs end up in logs.")


class ErasedSerializer(serializers.Serializer):
    code = serializers.UUIDField()
    status = serializers.CharField()
