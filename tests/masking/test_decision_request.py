"""The hand-written decision-body parser accepts and refuses exactly what the documented
serializer does, so the OpenAPI schema stays true."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from masking.decisions.apis import DecisionsApi
from masking.decisions.request import parse_decision_request

COL = {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers", "column": "email"}
CASES = [
    {"principal": {"user": "alice@example.com"}, "columns": [COL]},
    {"principal": {"user": "alice@example.com", "groups": ["support"]}, "query_id": "q", "columns": [COL]},
    {"principal": {"service_account": "etl-job"}, "columns": [COL, {**COL, "schema": ""}]},
    {"principal": {"user": "a"}, "columns": [{k: v for k, v in COL.items() if k != "schema"}]},
    {"principal": {"user": "a", "service_account": "b"}, "columns": [COL]},
    {"principal": {}, "columns": [COL]},
    {"principal": {"usr": "a"}, "columns": [COL]},
    {"principal": {"service_account": "not a slug"}, "columns": [COL]},
    {"principal": {"service_account": "etl", "groups": ["x"]}, "columns": [COL]},
    {"principal": {"user": "a", "groups": "admins"}, "columns": [COL]},
    {"principal": {"user": "a"}, "columns": []},
    {"principal": {"user": "a"}, "columns": [{"instance": "x"}]},
    {"principal": {"user": "a"}, "columns": [{**COL, "colour": "red"}]},
    {"principal": {"user": "a"}, "columns": [{**COL, "table": ""}]},
    {"principal": {"user": "a"}, "columns": [{**COL, "column": 7}]},
    {"principal": {"user": "a"}, "columns": [COL], "extra": 1},
    {"principal": {"user": "a"}, "columns": [COL], "query_id": "x" * 201},
    {"principal": {"user": "a"}, "columns": "email"},
    {"columns": [COL]},
    {"principal": {"user": "a"}},
]


@pytest.mark.parametrize("body", CASES)
def test_the_parser_agrees_with_the_documented_serializer(body):
    serializer = DecisionsApi.DecisionsInputSerializer(data=body)
    serializer_ok = serializer.is_valid()
    try:
        parsed = parse_decision_request(body, max_columns=1000)
        parser_ok = True
    except ValidationError:
        parser_ok = False

    assert parser_ok == serializer_ok, (body, serializer.errors)
    if parser_ok:
        data = serializer.validated_data
        assert [tuple(c.values()) for c in data["columns"]] == [tuple(k) for k in parsed.columns]
        assert parsed.query_id == data["query_id"]


def test_too_many_columns_is_refused_with_the_limit():
    with pytest.raises(ValidationError, match="at most 2"):
        parse_decision_request({"principal": {"user": "a"}, "columns": [COL] * 3}, max_columns=2)
