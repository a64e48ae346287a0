"""Finding 4: a YAML alias bomb in policy import, and deep nesting answered with a 500.

A 380-byte document (aliases nested 6 deep) took 9.6 s and 1.16 GB; 50k nested `[[...]]` in Veil
or Bytebase format raised RecursionError (a 500). Policy files are now read by a loader that
refuses anchors and aliases and nesting deeper than 64 levels while composing the document,
before anything is built or walked: every place a policy file is read (the web page, upload
included, the policy API, the CLI, the Bytebase importer) answers with the problem named.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from identity.models import Scope
from tests.factories import grant_project_perm, make_shop_policy, make_token, make_user

pytestmark = pytest.mark.django_db

# The finding's shape, three levels deep instead of six (729 items instead of 531,441), so that
# reading it without the fix stays cheap and the test fails on the message, not on memory.
BOMB = """\
semantic_types: &types
- {key: a, title: A, algorithm: {type: full}}
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""
DEEP = "[" * 50_000 + "]" * 50_000
DEEP_BYTEBASE = '{"policies": ' + "[" * 50_000 + "]" * 50_000 + "}"
ALIASES = "line 1: YAML anchors and aliases (&name, *name) are not accepted"
TOO_DEEP = "is nested more than 64 levels deep"

CASES = [
    ("veil", BOMB, f"document: {ALIASES}"),
    ("veil", DEEP, f"document: line 1: {TOO_DEEP}"),
    ("bytebase", BOMB, f"bytebase: {ALIASES}"),
    ("bytebase", DEEP_BYTEBASE, f"bytebase: {TOO_DEEP}"),
]
IDS = ["veil-aliases", "veil-deep", "bytebase-aliases", "bytebase-deep"]


@pytest.fixture
def ci(api_client, shop):
    make_shop_policy()
    _, token = make_token([Scope.POLICY_WRITE], "ci")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


@pytest.fixture
def polly_client(client, shop):
    make_shop_policy()
    polly = make_user("polly")
    grant_project_perm(polly, "administer_policy", shop)
    client.force_login(polly)
    return client


@pytest.mark.parametrize(("source_format", "source", "message"), CASES, ids=IDS)
def test_the_policy_api_refuses_the_file_with_a_400_naming_the_problem(ci, source_format, source, message):
    response = ci.post(
        "/api/v1/policy/plan", {"policy": source, "source_format": source_format}, format="json"
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["message"] == message


@pytest.mark.parametrize(("source_format", "source", "message"), CASES, ids=IDS)
def test_the_policy_page_shows_the_problem_next_to_a_pasted_file(
    polly_client, source_format, source, message
):
    response = polly_client.post(reverse("policy:code"), {"source": source, "source_format": source_format})

    assert response.status_code == 200
    assert response.context["form"].errors["source"] == [message]


@pytest.mark.parametrize(("source_format", "source", "message"), CASES, ids=IDS)
def test_the_policy_page_refuses_an_uploaded_file(polly_client, source_format, source, message):
    upload = SimpleUploadedFile("policy.yaml", source.encode())

    response = polly_client.post(reverse("policy:code"), {"upload": upload, "source_format": source_format})

    assert response.status_code == 200
    assert response.context["form"].errors["source"] == [message]


@pytest.mark.parametrize(("source_format", "source", "message"), CASES, ids=IDS)
def test_the_cli_refuses_the_file(shop, tmp_path, source_format, source, message):
    make_shop_policy()
    path = tmp_path / "policy.yaml"
    path.write_text(source)

    with pytest.raises(CommandError) as refused:
        call_command("policy", "plan", str(path), "--format", source_format)

    assert str(refused.value) == message


def test_an_anchor_alone_is_refused_where_it_stands(ci):
    source = "semantic_types:\n- &email {key: email, title: Email, algorithm: {type: full}}\n"

    response = ci.post("/api/v1/policy/plan", {"policy": source}, format="json")

    assert response.status_code == 400
    assert response.json()["error"][
        "message"
    ] == "document: line 2: YAML anchors and aliases (&name, *name) " + ("are not accepted")


def test_nesting_within_the_limit_is_read_as_before(ci):
    exported = ci.get("/api/v1/policy/export").json()["yaml"]

    response = ci.post("/api/v1/policy/plan", {"policy": exported}, format="json")

    assert response.status_code == 200
    assert response.json()["has_changes"] is False
