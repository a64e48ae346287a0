"""Every API operation holds to the OpenAPI schema Veil publishes, in both directions.

schemathesis generates requests from the published schema: its examples, the boundary cases of
every constraint ("coverage": one character over `maxLength`, a missing required field, a number
where a string goes, ...) and random ones, valid and invalid. Every check runs on every answer:
no server error; the status code, content type, headers and body as documented; a valid request
accepted and an invalid one refused; the request refused with 401 without credentials or with
bad ones; an undocumented method refused with 405 and `Allow`. tests/schemathesis.toml sets the
number of cases and names, operation by operation, the few rules the schema cannot state, each
with why. The calls go through Veil's own WSGI application, the decision endpoint in front of
Django included, on the test database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from config.wsgi import application
from identity.models import Scope
from masking.services.policy import bump_epoch
from tests.factories import grant_project_perm, make_shop_policy, make_token, make_user

CONFIG = schemathesis.Config.from_path(Path(__file__).with_name("schemathesis.toml"))


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


# Loaded when the module is imported (the schema is generated without the database), so that each
# operation is a test of its own, on a database of its own. (`schemathesis.pytest.from_fixture`
# would load it in a fixture, but fails under pytest 9.2: it sets `Function._nodeid`.)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema", in_test_transaction, config=CONFIG)


@pytest.fixture
def every_scope(db, shop):
    """The shop's catalog and policy, and a token with every scope of an agent whose owner may
    request unmask in the shop: the request operations then act (and refuse) as they do for a
    real agent."""
    make_shop_policy()
    bump_epoch()
    account, token = make_token(list(Scope.values), "fuzzer")
    account.owner = make_user("fuzz-owner")
    account.save(update_fields=["owner"])
    grant_project_perm(account.owner, "request_unmask", shop)
    return token


def test_the_schema_publishes_every_operation():
    assert len(list(schema.get_all_operations())) >= 16


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_holds_to_its_schema(case, every_scope):
    case.call_and_validate(headers={"Authorization": f"Bearer {every_scope}"})
