"""Finding 9 (part): duplicate JSON keys took the last value silently.

`{"principal": {"user": "alice"}, "principal": {"user": "bob"}}` was decided for bob, while
anything that reads the first key (a proxy, a log, a reviewer) saw alice. Request bodies (the API's
parser and the decision endpoint's own) and JSON policy documents now refuse a key given twice
with a 400 naming it, and refuse bodies nested deeper than 64 levels (a 500 before).
"""

from __future__ import annotations

import json

import pytest

from identity.models import Scope
from tests.factories import make_shop_policy, make_token, make_user

pytestmark = pytest.mark.django_db

COLUMN = (
    '{"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers", "column": "id"}'
)


@pytest.fixture
def proxy(api_client, shop):
    make_shop_policy()
    make_user("alice", email="alice@example.com")
    make_user("bob", email="bob@example.com")
    _, token = make_token([Scope.DECISIONS], "sql-proxy")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


@pytest.fixture
def ci(api_client, shop):
    make_shop_policy()
    _, token = make_token([Scope.POLICY_WRITE], "ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def _post(client, url: str, body: str):
    return client.post(url, data=body, content_type="application/json")


def _refusal(response) -> str:
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    return error["message"]


def test_a_decision_request_naming_two_principals_is_refused(proxy):
    body = (
        '{"principal": {"user": "alice@example.com"}, "principal": {"user": "bob@example.com"}, '
        f'"columns": [{COLUMN}]}}'
    )

    assert _refusal(_post(proxy, "/api/v1/decisions", body)) == "JSON parse error - duplicate key 'principal'"


def test_a_decision_request_column_naming_two_columns_is_refused(proxy):
    column = COLUMN.replace('"column": "id"', '"column": "id", "column": "email"')
    body = f'{{"principal": {{"user": "alice@example.com"}}, "columns": [{column}]}}'

    assert _refusal(_post(proxy, "/api/v1/decisions", body)) == "JSON parse error - duplicate key 'column'"


def test_a_decision_request_without_duplicates_is_answered_as_before(proxy):
    body = f'{{"principal": {{"user": "alice@example.com"}}, "columns": [{COLUMN}]}}'

    response = _post(proxy, "/api/v1/decisions", body)

    assert response.status_code == 200
    assert response.json()["decisions"][0]["action"] == "unmask"


def test_an_api_body_with_a_duplicate_key_is_refused(ci):
    body = '{"policy": "rules: []\\n", "policy": "semantic_types: []\\n"}'

    assert _refusal(_post(ci, "/api/v1/policy/plan", body)) == "JSON parse error - duplicate key 'policy'"


@pytest.mark.parametrize("url", ["/api/v1/policy/plan", "/api/v1/decisions"])
def test_a_body_nested_too_deep_is_a_400_not_a_500(ci, url):
    _, token = make_token([Scope.POLICY_WRITE, Scope.DECISIONS], "deep")
    ci.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = '{"policy": ' + "[" * 50_000 + "]" * 50_000 + "}"

    assert _refusal(_post(ci, url, body)) == "JSON parse error - is nested more than 64 levels deep"


@pytest.mark.parametrize(
    ("source_format", "document", "message"),
    [
        ("veil", '{"rules": [], "rules": []}', "document: line 1: duplicate key 'rules'"),
        (
            "veil",
            '{"semantic_types": [{"key": "a", "title": "A", "title": "B", "algorithm": {"type": "full"}}]}',
            "document: line 1: duplicate key 'title'",
        ),
        (
            "bytebase",
            '{"name": "policies/masking_rule", "maskingRulePolicy": {"rules": []}, "maskingRulePolicy": {}}',
            "bytebase: duplicate key 'maskingRulePolicy'",
        ),
    ],
    ids=["veil-section", "veil-field", "bytebase"],
)
def test_a_json_policy_document_with_a_duplicate_key_is_refused(ci, source_format, document, message):
    response = ci.post(
        "/api/v1/policy/plan", {"policy": document, "source_format": source_format}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_the_api_still_refuses_nan(ci):
    body = json.dumps({"policy": "rules: []\n", "expected_version": float("nan")})

    assert _refusal(_post(ci, "/api/v1/policy/plan", body)) == "JSON parse error - NaN is not a JSON number"
