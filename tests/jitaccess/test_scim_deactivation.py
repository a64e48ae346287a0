"""A person the IdP deactivates (SCIM) loses their access at once: grants revoked, pending requests
cancelled, decisions masked, even right after a decision cached them; group changes count from the
next decision."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from identity.models import DirectoryGroup, Role, Scope
from jitaccess.services.requests import request_approve
from jitaccess.states import State
from masking.decisions.engine import ColumnKey
from masking.models import Exemption
from masking.selectors import decision_caches, load_grants
from tests.factories import make_token

pytestmark = pytest.mark.django_db
EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _decide(username: str):
    epochs = decision_caches.epochs()
    principal = decision_caches.principal({"user": username}, frozenset())
    if principal is None:
        return "mask", "unknown_principal"
    policy = decision_caches.policy(epochs)
    decision = policy.decide(principal, [EMAIL], load_grants(principal), now=timezone.now().timestamp())[0]
    return decision.action, decision.reason_kind


def _patch(client: Client, path: str, operations: list) -> int:
    body = json.dumps({"schemas": [PATCH_OP], "Operations": operations})
    return client.patch(f"/scim/v2/{path}", data=body, content_type="application/scim+json").status_code


@pytest.fixture
def directory(world):
    """alice as an IdP person, and a SCIM client for the directory's service account."""
    world.alice.oidc_subject, world.alice.scim_external_id = "00u-alice", "00u-alice"
    world.alice.save()
    account, token = make_token([Scope.SCIM], account_name="okta-scim")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}"), account


def test_deactivation_revokes_grants_cancels_requests_and_masks_at_once(world, directory):
    client, account = directory
    granted = world.request("email")
    request_approve(request_id=granted.pk, approver=world.bob, channel="web")
    pending = world.request("phone")
    assert _decide("alice") == ("unmask", "grant")  # the principal is now cached in this process

    status = _patch(client, f"Users/{world.alice.scim_id}", [{"op": "replace", "value": {"active": False}}])

    assert status == 200
    granted.refresh_from_db()
    pending.refresh_from_db()
    assert (granted.state, pending.state) == (State.REVOKED, State.CANCELLED)
    assert granted.ended_by is None, "no person ended it"
    assert Exemption.objects.get(pk=granted.grant_id).revoked_at is not None
    assert _decide("alice") == ("mask", "unknown_principal")
    ended = AuditEvent.objects.filter(action__in=["request.revoked", "request.cancelled"])
    assert {(e.action, e.actor_id, e.detail["reason"]) for e in ended} == {
        ("request.revoked", f"sa:{account.name}", "deactivated in the company directory (SCIM)"),
        ("request.cancelled", f"sa:{account.name}", "deactivated in the company directory (SCIM)"),
    }


def test_deactivation_reaches_a_principal_cached_before_it_without_a_grant(world, directory):
    client, _ = directory
    exempt = Role.objects.create(name="exempt")
    exempt.users.add(world.alice)
    Exemption.objects.create(project=world.project, reason="test").roles.add(exempt)
    decision_caches.clear()
    assert _decide("alice")[0] == "unmask"

    _patch(client, f"Users/{world.alice.scim_id}", [{"op": "Replace", "path": "active", "value": "False"}])
    decision_caches.forget_epochs()  # as another process would, within DECISION_EPOCH_MAX_AGE_MS

    assert _decide("alice") == ("mask", "unknown_principal")


def test_a_group_change_counts_from_the_next_decision(world, directory):
    client, _ = directory
    engineering = Group.objects.get(name="engineering")
    directory_group = DirectoryGroup.objects.create(group=engineering)
    role = Role.objects.create(name="engineers")
    role.groups.add(engineering)
    Exemption.objects.create(project=world.project, reason="test").roles.add(role)
    decision_caches.clear()
    assert _decide("alice")[0] == "unmask"

    status = _patch(
        client,
        f"Groups/{directory_group.scim_id}",
        [{"op": "remove", "path": f'members[value eq "{world.alice.scim_id}"]'}],
    )
    decision_caches.forget_epochs()

    assert status == 200
    assert _decide("alice")[0] == "mask"
