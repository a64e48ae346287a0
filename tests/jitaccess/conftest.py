"""Personas and a small world for the JIT tests: a catalogued shop, an approval policy, people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from audit.models import Channel
from identity.models import Role, User
from jitaccess.models import ApprovalPolicy
from jitaccess.selectors.scopes import Scope
from jitaccess.services.requests import request_create
from masking.models import Database, Project
from tests.factories import grant_project_perm, make_shop_policy, make_user


@dataclass
class World:
    project: Project
    database: Database
    alice: User  # engineer, requester
    bob: User  # approver
    carol: User  # approver
    dave: User  # project administrator
    eve: User  # outsider: no permission anywhere
    policy: ApprovalPolicy

    def scope(self, *columns: str) -> Scope:
        return Scope(self.database, "public", "customers", tuple(columns or ("email",)))

    def request(self, *columns: str, duration: timedelta = timedelta(hours=2), **kwargs) -> object:
        return request_create(
            requester=kwargs.pop("requester", self.alice),
            scope=self.scope(*columns),
            duration=duration,
            reason=kwargs.pop("reason", "INC-4711 refund mismatch"),
            channel=Channel.WEB,
            **kwargs,
        )


@pytest.fixture
def world(db, shop) -> World:
    make_shop_policy()
    alice = make_user("alice", display_name="Alice Engineer")
    bob, carol = make_user("bob", display_name="Bob"), make_user("carol", display_name="Carol")
    dave, eve = make_user("dave"), make_user("eve")
    engineering = Group.objects.create(name="engineering")
    alice.groups.add(engineering)
    grant_project_perm(alice, "request_unmask", shop)
    grant_project_perm(dave, "administer_policy", shop)
    approvers = Role.objects.create(name="pii-approvers")
    approvers.users.add(bob, carol)
    policy = ApprovalPolicy.objects.create(
        project=shop, title="prod PII", condition="true", approvals_required=1
    )
    policy.approver_roles.add(approvers)
    return World(shop, Database.objects.get(name="shop"), alice, bob, carol, dave, eve, policy)
