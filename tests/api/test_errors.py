"""Problem details (RFC 9457) on every error path, through views built on the API's base."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response

from api.models import ApiRole
from api.scoping import UnitScopedAPIView
from tests.api.test_framework import assert_problem


class ThingSerializer(serializers.Serializer):
    email = serializers.EmailField()
    items = serializers.ListField(child=serializers.DictField(), required=False)


class ThingView(UnitScopedAPIView):
    """Reads need a viewer key, writes an editor key; the body is validated."""

    def get(self, request):
        return Response({"unit": self.unit.slug})

    def post(self, request):
        serializer = ThingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["email"].endswith("@refused.example"):
            raise ValidationError("The service refuses this address, and says why.")
        return Response({}, status=201)


class BrokenView(UnitScopedAPIView):
    read_roles = tuple(ApiRole)

    def get(self, request):
        raise RuntimeError("secret internals")


urlpatterns = [
    path("api/test/thing/", ThingView.as_view()),
    path("api/test/broken/", BrokenView.as_view()),
    path("api/", include("api.urls")),
]


@override_settings(ROOT_URLCONF=__name__)
def test_a_role_too_weak_is_403_and_names_the_role(world, api_keys, api):
    body = assert_problem(api(api_keys.viewer).post("/api/test/thing/", {}, format="json"), 403)
    assert "editor" in body["detail"] and "viewer" in body["detail"]
    assert_problem(api(api_keys.consent_writer).get("/api/test/thing/"), 403)
    assert api(api_keys.editor).get("/api/test/thing/").json() == {"unit": "engineering"}


@override_settings(ROOT_URLCONF=__name__)
def test_validation_errors_list_each_field(world, api_keys, api):
    client = api(api_keys.editor)
    body = assert_problem(
        client.post("/api/test/thing/", {"email": "nope", "items": ["x"]}, format="json"), 400
    )
    fields = {error["field"]: error["message"] for error in body["errors"]}
    assert set(fields) == {"email", "items[0]"}
    assert "valid email" in fields["email"]


@override_settings(ROOT_URLCONF=__name__)
def test_a_service_refusal_is_400_with_its_reason(world, api_keys, api):
    response = api(api_keys.editor).post(
        "/api/test/thing/", {"email": "a@refused.example"}, format="json"
    )
    body = assert_problem(response, 400)
    assert body["detail"] == "The service refuses this address, and says why."
    assert body["errors"] == [{"field": "", "message": body["detail"]}]


@override_settings(ROOT_URLCONF=__name__)
def test_a_body_that_is_not_json_is_a_problem(world, api_keys, api):
    client = api(api_keys.editor)
    assert_problem(
        client.post("/api/test/thing/", "{not json", content_type="application/json"), 400
    )
    assert_problem(client.post("/api/test/thing/", "a=b", content_type="text/plain"), 415)


@override_settings(ROOT_URLCONF=__name__)
def test_a_server_error_is_a_500_problem_without_internals(world, api_keys, api, caplog):
    logging.getLogger("api").addHandler(caplog.handler)  # the api logger does not propagate
    response = api(api_keys.viewer).get("/api/test/broken/")
    body = assert_problem(response, 500)
    assert "secret internals" not in response.content.decode()
    assert "logged" in body["detail"]
    assert "secret internals" in caplog.text
    logging.getLogger("api").removeHandler(caplog.handler)
