"""The JIT API: the same lifecycle over HTTP, with object permissions and clear errors."""

from __future__ import annotations

import pytest

from identity.models import Scope as TokenScope
from identity.models import ServiceAccount
from jitaccess.models import AccessRequest
from jitaccess.states import State
from tests.factories import grant_project_perm, make_project, make_token, make_user

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
    from jitaccess.services.requests import request_approve

    grant = request_approve(request_id=world.request("email").pk, approver=world.bob, channel=Channel.WEB)
    api_client.force_authenticate(world.dave)

    response = api_client.post(f"{URL}/{grant.pk}/revoke", {"reason": "Ticket closed"}, format="json")

    assert response.status_code == 200 and response.json()["state"] == "revoked"
    assert AuditEvent.objects.get(action="request.revoked").detail["reason"] == "Ticket closed"


def test_an_agent_reads_and_cancels_only_the_requests_made_for_it(world, api_client):
    """A `requests` token asks on its owner's behalf; it does not read or cancel everything the
    owner may see (here the owner's own request, and a request of a project Alice approves in)."""
    from guardian.shortcuts import assign_perm

    account, token = make_token([TokenScope.REQUESTS], account_name="support-bot")
    ServiceAccount.objects.filter(pk=account.pk).update(owner=world.alice)
    assign_perm("masking.approve_request", world.alice, world.project)
    own = world.request("email")  # Alice's, made in the web pages
    frank = make_user("frank")
    grant_project_perm(frank, "request_unmask", world.project)
    colleague = world.request("email", requester=frank)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    mine = api_client.post(URL, _body(), format="json").json()["id"]

    assert [r["id"] for r in api_client.get(URL).json()] == [mine]
    for other in (own, colleague):
        assert api_client.get(f"{URL}/{other.pk}").status_code == 404
        assert api_client.post(f"{URL}/{other.pk}/cancel", format="json").status_code == 404
        assert AccessRequest.objects.get(pk=other.pk).state == State.PENDING
    assert api_client.post(f"{URL}/{mine}/cancel", format="json").status_code == 200


def test_an_agent_whose_owner_left_cannot_act_for_them(world, api_client):
    account, token = make_token([TokenScope.REQUESTS], account_name="support-bot")
    ServiceAccount.objects.filter(pk=account.pk).update(owner=world.alice)
    world.alice.is_active = False
    world.alice.save(update_fields=["is_active"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert api_client.get(URL).status_code == 403
    assert api_client.post(URL, _body(), format="json").status_code == 403
    assert not AccessRequest.objects.exists()


def test_an_extension_is_more_time_on_ones_own_grant_for_the_same_scope(world, api_client):
    """Over the API, `extends` once took any request the caller could see, in any state, with any
    scope: an approver could hang a request of theirs on someone else's grant, and an extension
    skips the check that something is masked."""
    from jitaccess.services.requests import request_approve

    grant = world.request("email")
    request_approve(request_id=grant.pk, approver=world.bob, channel="web")
    pending = world.request("phone")
    from guardian.shortcuts import assign_perm

    assign_perm("masking.request_unmask", world.bob, world.project)
    assign_perm("masking.approve_request", world.bob, world.project)

    api_client.force_authenticate(world.bob)
    hijack = api_client.post(URL, _body(extends=grant.pk), format="json")
    assert hijack.status_code == 400 and "not your grant" in hijack.json()["error"]["message"]

    api_client.force_authenticate(world.alice)
    wider = api_client.post(URL, _body(columns=["email", "phone"], extends=grant.pk), format="json")
    assert wider.status_code == 400 and "scope of" in wider.json()["error"]["message"], wider.content
    not_yet = api_client.post(URL, _body(columns=["phone"], extends=pending.pk), format="json")
    assert not_yet.status_code == 400 and "only an active grant" in not_yet.json()["error"]["message"]
    unseen = api_client.post(URL, _body(extends=999999), format="json")
    assert unseen.status_code == 400 and "extends" in unseen.json()["error"]["fields"]
    assert AccessRequest.objects.filter(extends__isnull=False).count() == 0

    same = api_client.post(URL, _body(extends=grant.pk, duration_minutes=60), format="json")
    assert same.status_code == 201, same.content
