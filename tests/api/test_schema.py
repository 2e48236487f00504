"""Schemathesis against the live OpenAPI schema: requests generated from the schema, sent with
a valid key to a real server, find no server error and no answer the schema does not describe."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import Keys


@pytest.fixture
def live_api(live_server, world, api_keys, dm_types, settings):
    """The schema served by a live server (a thread of this process, the tests' database)."""
    settings.MLM_API_RATE = "1000000/m"
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")


schema = schemathesis.pytest.from_fixture("live_api")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
def test_the_api_keeps_to_its_schema(case, api_keys: Keys, live_server):
    """No 5xx, and every answer (status, content type, headers, body) as the schema says.

    Schema-valid data may still be refused with a 400 problem: a schema cannot say that a DM
    type key exists in the unit or that a text is a deliverable address, so Schemathesis's
    "positive data is accepted" check is left out; every other check runs.
    """
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Bearer {api_keys.editor}"},
        excluded_checks=[positive_data_acceptance],
    )
