"""Serializer fields shared by the API's endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from recipients.addresses import InvalidAddress, normalise_address

MAX_ATTRIBUTES = 50


class AddressField(serializers.CharField):
    """A mail address, answered in its normal form (IDNA domain, lower-cased domain)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 320)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return normalise_address(text)
        except InvalidAddress as error:
            raise serializers.ValidationError(str(error)) from None


def _clean_scalar(value: Any, name: str) -> Any:
    if isinstance(value, str):
        if "\x00" in value or len(value) > 1000:
            raise serializers.ValidationError(
                f"The attribute {name!r} must be text of at most 1,000 characters, without NUL."
            )
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    raise serializers.ValidationError(
        f"The attribute {name!r} must be text, a number, true, false or null."
    )


class AttributesField(serializers.DictField):
    """Personalisation attributes: a flat object of at most 50 names to text, numbers,
    booleans or null (what templates and segments read)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        data = super().to_internal_value(data)
        if len(data) > MAX_ATTRIBUTES:
            raise serializers.ValidationError(f"At most {MAX_ATTRIBUTES} attributes.")
        cleaned = {}
        for name, value in data.items():
            if not name or len(name) > 60 or "\x00" in name:
                raise serializers.ValidationError(
                    "Attribute names are 1 to 60 characters, without NUL."
                )
            cleaned[name] = _clean_scalar(value, name)
        return cleaned
