"""OpenAPI: the bearer key scheme and the problem-details answers every operation may give."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from api.errors import PROBLEM_TYPE


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        help_text='The field, e.g. "email" or "items[3].email"; "" is the body.'
    )
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = FieldErrorSerializer(many=True, required=False)


# Answers any operation may give, with why.
_PROBLEMS = {
    "400": "The request is invalid: `errors` lists each field and what is wrong.",
    "401": "No key, or an unknown, revoked or expired key.",
    "403": "The key's role does not allow this request.",
    "404": "No such object in the key's unit.",
    "405": "The method is not allowed here.",
    "415": "The body is not JSON (or not the type this operation reads).",
    "429": "Too many requests for this key: wait Retry-After seconds.",
}


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the problem answers added to every operation."""

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        problems = {**_PROBLEMS, **getattr(self.view, "extra_problems", {})}
        for code, description in problems.items():
            if code not in bodies:
                answer = self._get_response_for_code(ProblemSerializer, code, [PROBLEM_TYPE])
                answer["description"] = description
                bodies[code] = answer
        return bodies


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A key made on the unit's API keys page: `Authorization: Bearer mlm_…`.",
        }
