"""Every API operation, fed what its OpenAPI schema allows and more (schemathesis generates the
cases from the schema Veil publishes), answers without a server error: bad input is a 4xx that
names the field, never a 500. The calls go through Veil's own WSGI application, the decision
endpoint in front of Django included, on the test database."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from config.wsgi import application
from identity.models import Scope
from masking.services.policy import bump_epoch
from tests.factories import make_shop_policy, make_token


def in_test_transaction(environ, start_response):
    """Veil's WSGI application, without closing the test's database connection at the end of each
    request (what Django's test client does too): the calls then see the test's data."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        body = list(response)
        getattr(response, "close", lambda: None)()
        return body
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(db, shop):
    make_shop_policy()
    bump_epoch()
    return schemathesis.openapi.from_wsgi("/api/v1/schema", in_test_transaction)


@pytest.fixture
def every_scope(db):
    _, token = make_token(list(Scope.values), "fuzzer")
    return token


def test_no_operation_answers_a_server_error(api_schema, every_scope):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14, "every operation the schema publishes"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_without_a_server_error(case):
            case.call_and_validate(
                headers={"Authorization": f"Bearer {every_scope}"}, checks=[not_a_server_error]
            )

        answers_without_a_server_error()
