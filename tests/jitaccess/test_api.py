"""The JIT API: the same lifecycle over HTTP, with object permissions and clear errors."""

from __future__ import annotations

import pytest

from identity.models import Scope as TokenScope
from identity.models import ServiceAccount
from jitaccess.models import AccessRequest
from jitaccess.states import State
from tests.factories import make_project, make_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests"


def _body(**overrides):
    return {
        "instance": "prod-pg",
        "database": "shop",
        "schema": "public",
        "table": "customers",
        "columns": ["email"],
        "duration_minutes": 120,
        "reason": "INC-4711",
        **overrides,
    }


def test_request_approve_and_see_the_grant(world, api_client):
    api_client.force_authenticate(world.alice)
    created = api_client.post(URL, _body(ticket_url="https://tickets.example.com/INC-4711"), format="json")
    assert created.status_code == 201, created.content
    request_id = created.json()["id"]
    assert created.json()["state"] == "pending"

    api_client.force_authenticate(world.bob)
    approved = api_client.post(f"{URL}/{request_id}/approve", format="json")

    assert approved.status_code == 200, approved.content
    assert approved.json()["state"] == "approved" and approved.json()["approvals"] == ["bob"]
    assert approved.json()["expires_at"]


def test_approving_twice_answers_409_with_the_current_state(world, api_client):
    request = world.request("email")
    api_client.force_authenticate(world.bob)
    api_client.post(f"{URL}/{request.pk}/deny", {"reason": "no"}, format="json")

    response = api_client.post(f"{URL}/{request.pk}/approve", format="json")

    assert response.status_code == 409
    assert "denied" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"columns": ["shoe_size"]}, "columns"),
        ({"table": "nope"}, "table"),
        ({"database": "nope"}, "database"),
        ({"duration_minutes": 60 * 24 * 30}, "duration"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"reason": ""}, "reason"),
        ({"colour": "red"}, "colour"),
        ({"columns": ["id"]}, "scope"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(world, api_client, overrides, field):
    api_client.force_authenticate(world.alice)

    response = api_client.post(URL, _body(**overrides), format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not AccessRequest.objects.exists()


def test_another_projects_request_cannot_be_read_or_acted_on(world, api_client):
    request = world.request("email")
    other = make_project("billing")
    from tests.factories import grant_project_perm, make_user

    stranger = make_user("stranger")
    grant_project_perm(stranger, "approve_request", other)
    grant_project_perm(stranger, "administer_policy", other)
    api_client.force_authenticate(stranger)

    assert api_client.get(f"{URL}/{request.pk}").status_code == 404
    assert api_client.post(f"{URL}/{request.pk}/approve", format="json").status_code == 404
    assert api_client.post(f"{URL}/{request.pk}/revoke", format="json").status_code == 404
    assert api_client.get(URL).json() == []
    assert AccessRequest.objects.get(pk=request.pk).state == State.PENDING


def test_approvers_see_requests_of_their_project_and_requesters_only_their_own(world, api_client):
    from guardian.shortcuts import assign_perm

    assign_perm("masking.approve_request", world.bob, world.project)
    world.request("email")
    api_client.force_authenticate(world.bob)
    assert len(api_client.get(URL).json()) == 1

    api_client.force_authenticate(world.eve)
    assert api_client.get(URL).json() == []


def test_a_person_without_request_permission_is_forbidden(world, api_client):
    api_client.force_authenticate(world.eve)

    assert api_client.post(URL, _body(), format="json").status_code == 403


def test_an_agent_requests_for_itself_on_behalf_of_its_owner_but_cannot_approve(world, api_client):
    account, token = make_token([TokenScope.REQUESTS], account_name="support-bot")
    ServiceAccount.objects.filter(pk=account.pk).update(owner=world.alice)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    created = api_client.post(URL, _body(), format="json")

    assert created.status_code == 201, created.content
    assert (created.json()["requester"], created.json()["service_account"]) == ("alice", "support-bot")
    assert api_client.post(f"{URL}/{created.json()['id']}/approve", format="json").status_code == 403


def test_an_agent_without_an_owner_cannot_request(world, api_client):
    _, token = make_token([TokenScope.REQUESTS], account_name="orphan")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert api_client.post(URL, _body(), format="json").status_code == 403


def test_unknown_actions_are_404(world, api_client):
    request = world.request("email")
    api_client.force_authenticate(world.bob)

    assert api_client.post(f"{URL}/{request.pk}/explode", format="json").status_code == 404


def test_a_revocation_over_the_api_may_give_a_reason(world, api_client):
    from audit.models import AuditEvent, Channel
    from jitaccess.services import request_approve

    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)
    api_client.force_authenticate(world.dave)

    response = api_client.post(f"{URL}/{grant.pk}/revoke", {"reason": "Ticket closed"}, format="json")

    assert response.status_code == 200 and response.json()["state"] == "revoked"
    assert AuditEvent.objects.get(action="request.revoked").detail["reason"] == "Ticket closed"
