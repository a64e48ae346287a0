"""The OpenAPI schema covers every API endpoint, validates, documents every status an operation
answers and every constraint its input has (tests/test_api_fuzz.py holds the server to it), and
the docs page serves offline."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import serializers

from shared.api import QuerySerializer, StrictSerializer
from shared.schema import NO_NUL, NON_EMPTY, NOT_BLANK

pytestmark = pytest.mark.django_db


def _api_routes() -> set[str]:
    routes: set[str] = set()

    def walk(patterns: list, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = "/" + prefix + str(p.pattern)
                if route.startswith("/api/v1/") and p.name not in {"api-schema", "api-docs"}:
                    routes.add(route)

    walk(get_resolver().url_patterns, "")
    return routes


@pytest.fixture(scope="module")
def published(tmp_path_factory, django_db_blocker):
    out = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def _operations(schema: dict) -> list[tuple[str, dict]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def test_schema_validates_without_warnings(published):
    paths = set(published["paths"])

    assert _api_routes(), "no API routes found"
    missing = {r for r in _api_routes() if re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r) not in paths}
    assert not missing, f"endpoints missing from the schema: {missing}"


def test_docs_page_uses_bundled_assets(client):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr.net" not in html


def test_every_operation_documents_its_errors_in_the_one_error_shape(published):
    """401 and 403 everywhere (every operation needs a token with a scope), 404 where the path
    names an object, 400 where a body or query is read, 415 where a body is: each with the body
    `{"error": {...}}` that Veil sends."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for name, operation in _operations(published):
        responses = operation["responses"]
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        expected = {"401", "403"}
        expected |= {"404"} if "path" in places else set()
        expected |= {"400"} if "requestBody" in operation or "query" in places else set()
        expected |= {"400", "415"} if "requestBody" in operation else set()
        assert expected <= set(responses), (name, sorted(responses))
        for status in responses.keys() - {"200", "201", "202"}:
            assert responses[status]["content"] == error, (name, status)
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert operation.get("security"), name


def test_the_statuses_only_some_operations_answer_are_documented_there(published):
    operations = dict(_operations(published))

    assert {"409"} <= set(operations["POST /api/v1/requests/{request_id}/{action}"]["responses"])
    assert {"409", "202"} <= set(operations["POST /api/v1/policy/apply"]["responses"])
    assert {"413", "503"} <= set(operations["POST /api/v1/decisions"]["responses"])
    assert "`decisions`" in operations["POST /api/v1/decisions"]["responses"]["403"]["description"]


def test_request_bodies_refuse_unknown_fields_and_state_cross_field_rules(published):
    components = published["components"]["schemas"]

    for name in ("PrincipalIn", "ColumnRefIn", "CatalogUpsertInput", "QueryLoginInput", "ScopeIn"):
        assert components[name]["additionalProperties"] is False, name
    principal = components["PrincipalIn"]
    assert [branch["required"] for branch in principal["oneOf"]] == [["user"], ["service_account"]]
    decisions = components["DecisionsInput"]["properties"]["columns"]
    assert decisions["minItems"] == 1
    assert decisions["maxItems"] == 1000  # DECISION_MAX_COLUMNS


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        (serializers.CharField(), NOT_BLANK),
        (serializers.CharField(trim_whitespace=False), NON_EMPTY),
        (serializers.CharField(allow_blank=True), NO_NUL),
    ],
)
def test_string_patterns_accept_exactly_what_drf_accepts(field, pattern):
    """Every character Python strips (DRF strips a value before its blank check), a few that look
    like spaces but are not stripped, NUL, and ordinary text, alone and around a letter."""
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    samples = ["", "a", "\x00", "a\x00b", "\ufeff", "\u200b", "\x1b", *spaces]
    samples += [f"{c}a{c}" for c in spaces] + ["".join(spaces)]
    for value in samples:
        assert bool(re.search(pattern, value)) == _valid(field, value), (pattern, value)


def _valid(field: serializers.CharField, value: str) -> bool:
    try:
        field.run_validation(value)
    except serializers.ValidationError:
        return False
    return True


class _Body(StrictSerializer):
    name = serializers.CharField()
    count = serializers.IntegerField(required=False)
    on = serializers.BooleanField(required=False)
    level = serializers.ChoiceField(choices=[1, 2], required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 7}, "name"),
        ({"name": "a", "count": "7"}, "count"),
        ({"name": "a", "count": 7.0}, "count"),
        ({"name": "a", "count": True}, "count"),
        ({"name": "a", "on": "true"}, "on"),
        ({"name": "a", "on": 1}, "on"),
        ({"name": "a", "level": "1"}, "level"),
        ({"name": "a", "tags": ["x", 2]}, "tags"),
        ({"name": "a", "tags": "x"}, "tags"),
        ({"name": "a", "nmae": "b"}, "nmae"),
    ],
)
def test_a_body_value_of_another_json_type_than_the_schema_says_is_refused(body, field):
    serializer = _Body(data=body)

    assert not serializer.is_valid()
    assert field in serializer.errors


def test_a_body_of_the_schemas_json_types_is_accepted():
    serializer = _Body(data={"name": "a", "count": 7, "on": False, "level": 2, "tags": ["x"]})

    assert serializer.is_valid(), serializer.errors


class _Query(QuerySerializer):
    count = serializers.IntegerField(required=False)


def test_a_query_string_is_text_and_each_parameter_is_given_once():
    from django.http import QueryDict

    assert _Query(data=QueryDict("count=7")).is_valid()
    repeated = _Query(data=QueryDict("count=7&count=8"))
    unknown = _Query(data=QueryDict("cuont=7"))

    assert not repeated.is_valid() and "count" in repeated.errors
    assert not unknown.is_valid() and "cuont" in unknown.errors
