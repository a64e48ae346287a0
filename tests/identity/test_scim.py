"""Directory sync (SCIM 2.0) over HTTP, with the bodies Okta and Entra ID document sending.

Okta: developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20 (create user, PATCH
{"op": "replace", "value": {"active": false}}, group push: add members, remove
`members[value eq "id"]`, rename with {"id", "displayName"}). Entra ID: learn.microsoft.com
"Tutorial: Develop a sample SCIM endpoint" / "Known issues" (create user with the enterprise
extension, PATCH "Replace" with "path": "active" and the string "False", group Add/Remove members
with a value list).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.test import Client

from audit.models import AuditEvent
from identity.models import DirectoryGroup, Scope, User
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db
SCIM = "application/scim+json"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

OKTA_CREATE_USER: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}

ENTRA_CREATE_USER: dict[str, Any] = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "roles": [],
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
        "employeeNumber": "701984",
        "department": "x",
    },
}


@pytest.fixture
def scim() -> tuple[Client, str]:
    account, token = make_token([Scope.SCIM], account_name="okta-scim")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}"), account.name


def call(client: Client, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    response = getattr(client, method)(f"/scim/v2/{path}", data=data, content_type=SCIM)
    return response


def test_okta_creates_a_person_who_signs_in_as_the_okta_user_id(scim):
    client, account = scim
    response = call(client, "post", "Users", OKTA_CREATE_USER)

    assert response.status_code == 201, response.content
    body = response.json()
    person = User.objects.get(username="test.user@okta.local")
    assert body["id"] == str(person.scim_id)
    assert body["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert body["active"] is True
    assert response["Location"].endswith(f"/scim/v2/Users/{person.scim_id}")
    assert person.oidc_subject == "00ujl29u0le5T6Aj10h7", "the OIDC subject is the externalId"
    assert (person.email, person.email_verified) == ("test.user@okta.local", True)
    assert not person.has_usable_password(), "the password Okta sends is never a way in"
    event = AuditEvent.objects.get(action="directory.user_created")
    assert (event.actor_type, event.actor_id) == ("service_account", f"sa:{account}")
    assert "password" not in json.dumps(event.detail)


def test_okta_finds_a_person_by_username_before_creating_them(scim):
    client, _ = scim
    call(client, "post", "Users", OKTA_CREATE_USER)

    found = call(client, "get", 'Users?filter=userName eq "test.user@okta.local"&startIndex=1&count=100')
    missing = call(client, "get", 'Users?filter=userName eq "nobody@okta.local"')

    assert found.status_code == 200
    assert [r["userName"] for r in found.json()["Resources"]] == ["test.user@okta.local"]
    assert missing.json()["totalResults"] == 0


def test_entra_creates_a_person_and_its_extension_is_ignored(scim):
    client, _ = scim
    response = call(client, "post", "Users", ENTRA_CREATE_USER)

    assert response.status_code == 201, response.content
    person = User.objects.get(scim_external_id="0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")
    assert (person.first_name, person.last_name) == ("givenName", "familyName")
    assert person.email == "Test_User_fd0ea19b@testuser.com"


def test_okta_deactivates_a_person_and_their_sessions_end(scim):
    client, account = scim
    person_id = call(client, "post", "Users", OKTA_CREATE_USER).json()["id"]
    person = User.objects.get(scim_id=person_id)
    browser = Client()
    browser.force_login(person)
    assert Session.objects.count() == 1

    response = call(
        client,
        "patch",
        f"Users/{person_id}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )

    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    person.refresh_from_db()
    assert not person.is_active
    assert Session.objects.count() == 0
    event = AuditEvent.objects.get(action="directory.user_deactivated")
    assert event.detail == {"before": {"active": True}, "after": {"active": False}}
    assert event.actor_id == f"sa:{account}"


def test_entra_deactivates_with_replace_on_the_active_path_and_a_string_false(scim):
    client, _ = scim
    person_id = call(client, "post", "Users", ENTRA_CREATE_USER).json()["id"]

    response = call(
        client,
        "patch",
        f"Users/{person_id}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
    )

    assert response.status_code == 200, response.content
    assert not User.objects.get(scim_id=person_id).is_active


def test_entra_updates_attributes_by_path(scim):
    client, _ = scim
    person_id = call(client, "post", "Users", ENTRA_CREATE_USER).json()["id"]

    response = call(
        client,
        "patch",
        f"Users/{person_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Replace", "path": "name.givenName", "value": "Ada"},
                {"op": "Add", "path": 'emails[type eq "work"].value', "value": "ada@contoso.com"},
                {
                    "op": "Replace",
                    "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                    "value": "R&D",
                },
            ],
        },
    )

    assert response.status_code == 200, response.content
    person = User.objects.get(scim_id=person_id)
    assert (person.first_name, person.email) == ("Ada", "ada@contoso.com")
    event = AuditEvent.objects.get(action="directory.user_updated")
    assert event.detail["after"] == {"given_name": "Ada", "email": "ada@contoso.com"}


def test_put_replaces_the_person_and_delete_only_deactivates(scim):
    client, _ = scim
    person_id = call(client, "post", "Users", OKTA_CREATE_USER).json()["id"]

    put = call(
        client, "put", f"Users/{person_id}", {**OKTA_CREATE_USER, "displayName": "Renamed", "active": True}
    )
    deleted = call(client, "delete", f"Users/{person_id}")

    assert put.status_code == 200 and put.json()["displayName"] == "Renamed"
    assert deleted.status_code == 204
    assert User.objects.filter(scim_id=person_id, is_active=False).exists(), (
        "kept: requests and the log name them"
    )


def test_local_accounts_are_invisible_to_the_idp(scim):
    client, _ = scim
    admin = make_user("root", is_superuser=True)

    listed = call(client, "get", "Users").json()
    read = call(client, "get", f"Users/{admin.scim_id}")
    deactivate = call(
        client,
        "patch",
        f"Users/{admin.scim_id}",
        {"Operations": [{"op": "replace", "value": {"active": False}}]},
    )

    assert listed["totalResults"] == 0
    assert (read.status_code, deactivate.status_code) == (404, 404)
    admin.refresh_from_db()
    assert admin.is_active


def _group_with_members(client: Client, *people: str) -> str:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "engineering",
        "members": [{"value": p} for p in people],
    }
    response = call(client, "post", "Groups", body)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_okta_pushes_a_group_adds_and_removes_members(scim):
    client, _ = scim
    ada = call(client, "post", "Users", OKTA_CREATE_USER).json()["id"]
    bea = call(client, "post", "Users", ENTRA_CREATE_USER).json()["id"]
    group_id = _group_with_members(client)

    added = call(
        client,
        "patch",
        f"Groups/{group_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": ada, "display": "a"}, {"value": bea}]}
            ],
        },
    )
    removed = call(
        client,
        "patch",
        f"Groups/{group_id}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{ada}"]'}]},
    )
    renamed = call(
        client,
        "patch",
        f"Groups/{group_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"id": group_id, "displayName": "eng"}}],
        },
    )

    assert (added.status_code, removed.status_code, renamed.status_code) == (200, 200, 200)
    group = DirectoryGroup.objects.get(scim_id=group_id).group
    assert group.name == "eng"
    assert [u.scim_id for u in group.user_set.all()] == [User.objects.get(scim_id=bea).scim_id]
    assert [m["value"] for m in renamed.json()["members"]] == [bea]
    updates = AuditEvent.objects.filter(action="directory.group_updated").order_by("seq")
    assert [list(e.detail) for e in updates] == [
        ["members_added", "members_removed"],
        ["members_added", "members_removed"],
        ["name"],
    ]


def test_entra_adds_and_removes_members_with_value_lists(scim):
    client, _ = scim
    ada = call(client, "post", "Users", ENTRA_CREATE_USER).json()["id"]
    group_id = _group_with_members(client)

    call(
        client,
        "patch",
        f"Groups/{group_id}",
        {"Operations": [{"op": "Add", "path": "members", "value": [{"value": ada}]}]},
    )
    assert Group.objects.get(name="engineering").user_set.count() == 1
    call(
        client,
        "patch",
        f"Groups/{group_id}",
        {"Operations": [{"op": "Remove", "path": "members", "value": [{"value": ada}]}]},
    )
    assert Group.objects.get(name="engineering").user_set.count() == 0

    found = call(client, "get", 'Groups?filter=displayName eq "engineering"').json()
    assert [g["id"] for g in found["Resources"]] == [group_id]


def test_deleting_a_group_empties_it_and_keeps_its_permissions_group(scim):
    client, _ = scim
    ada = call(client, "post", "Users", OKTA_CREATE_USER).json()["id"]
    group_id = _group_with_members(client, ada)

    response = call(client, "delete", f"Groups/{group_id}")

    assert response.status_code == 204
    group = Group.objects.get(name="engineering")
    assert group.user_set.count() == 0 and not DirectoryGroup.objects.exists()
    assert AuditEvent.objects.filter(action="directory.group_deleted").count() == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "scim_type", "detail"),
    [
        ("post", "Users", {"name": {"givenName": "x"}}, 400, "invalidValue", "userName is required"),
        ("post", "Users", {"userName": 7}, 400, "invalidValue", "userName must be a string"),
        (
            "post",
            "Users",
            {"userName": "x", "emails": [{"value": "not-an-email"}]},
            400,
            None,
            "Invalid email value",
        ),
        (
            "post",
            "Users",
            {"userName": "x", "active": "maybe"},
            400,
            "invalidValue",
            "active must be a boolean",
        ),
        ("post", "Users", [1, 2], 400, "invalidSyntax", "must be a SCIM User object"),
        (
            "post",
            "Groups",
            {"displayName": "g", "members": [{"value": "nope"}]},
            400,
            "invalidValue",
            "not a user id",
        ),
        ("post", "Groups", {"members": []}, 400, "invalidValue", "displayName is required"),
    ],
)
def test_bad_input_is_refused_with_a_scim_error_and_nothing_written(
    scim, method, path, body, status, scim_type, detail
):
    client, _ = scim
    response = call(client, method, path, body)

    assert response.status_code == status, response.content
    error = response.json()
    assert error["schemas"] == [ERROR] and error["status"] == status
    assert error.get("scimType") == scim_type
    assert detail in error["detail"]
    assert not User.objects.exists() and not DirectoryGroup.objects.exists()


@pytest.mark.parametrize(
    ("operations", "scim_type", "detail"),
    [
        (
            [{"op": "frobnicate", "path": "active", "value": False}],
            "invalidSyntax",
            "op must be add, remove or replace",
        ),
        ([{"path": "active", "value": False}], "invalidSyntax", "op must be"),
        ([{"op": "replace", "path": "active", "value": "nope"}], "invalidValue", "active must be a boolean"),
        ([{"op": "remove", "path": "active"}], "mutability", "active cannot be removed"),
        ([{"op": "remove"}], "noTarget", "remove needs a path"),
        ([{"op": "replace", "value": False}], "invalidValue", "needs an object value"),
        ("replace", "invalidSyntax", "Operations must be a list"),
    ],
)
def test_malformed_patch_operations_change_nothing(scim, operations, scim_type, detail):
    client, _ = scim
    person_id = call(client, "post", "Users", OKTA_CREATE_USER).json()["id"]

    response = call(client, "patch", f"Users/{person_id}", {"schemas": [PATCH_OP], "Operations": operations})

    assert response.status_code == 400, response.content
    assert (response.json().get("scimType"), detail in response.json()["detail"]) == (scim_type, True)
    assert User.objects.get(scim_id=person_id).is_active
    assert (
        not AuditEvent.objects.filter(action__startswith="directory.user_")
        .exclude(action="directory.user_created")
        .exists()
    )


def test_a_taken_username_is_a_uniqueness_conflict(scim):
    client, _ = scim
    make_user("test.user@okta.local")

    response = call(client, "post", "Users", OKTA_CREATE_USER)

    assert response.status_code == 409
    assert response.json()["scimType"] == "uniqueness"


def test_unknown_id_is_404(scim):
    client, _ = scim
    response = call(client, "get", "Users/6f0c2a36-1111-4222-8333-444455556666")
    assert response.status_code == 404 and response.json()["schemas"] == [ERROR]


def test_scim_needs_a_token_with_the_scim_scope():
    _, decisions_token = make_token([Scope.DECISIONS])

    anonymous = Client().get("/scim/v2/Users")
    wrong_scope = Client(HTTP_AUTHORIZATION=f"Bearer {decisions_token}").get("/scim/v2/Users")
    garbage = Client(HTTP_AUTHORIZATION="Bearer veil_nope_nope").get("/scim/v2/Users")

    assert (anonymous.status_code, garbage.status_code, wrong_scope.status_code) == (401, 401, 403)
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert wrong_scope.json()["detail"] == "This token lacks the scim scope."


def test_service_provider_config_says_patch_and_filter(scim):
    client, _ = scim
    config = call(client, "get", "ServiceProviderConfig").json()
    assert config["patch"]["supported"] and config["filter"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
