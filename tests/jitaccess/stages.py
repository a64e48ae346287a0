"""The JIT personas (tests.jitaccess.conftest) with an approval policy in two stages: the data
owner, then security.

Stage 1, "Data owner": the policy's role pii-approvers (bob, carol), one approval.
Stage 2, "Security": the role security (frank, grace, and carol too), `security_quorum` approvals.
Carol is in both, so she may decide either stage, but one of them only.
"""

from __future__ import annotations

from dataclasses import dataclass

from identity.models import Role, User
from jitaccess.models import ApprovalStage
from tests.factories import make_user
from tests.jitaccess.conftest import World

DATA_OWNER, SECURITY = "Data owner", "Security"


@dataclass
class Staged:
    world: World
    frank: User  # security
    grace: User  # security

    def request(self, *columns: str, **kwargs: object) -> object:
        return self.world.request(*columns, **kwargs)


def staged_world(world: World, *, security_quorum: int = 1, carol_in_security: bool = True) -> Staged:
    """Turn the world's policy into two stages (its own approver roles move to stage 1)."""
    frank = make_user("frank", display_name="Frank")
    grace = make_user("grace", display_name="Grace")
    security = Role.objects.create(name="security")
    security.users.add(frank, grace, *([world.carol] if carol_in_security else []))
    owners = list(world.policy.approver_roles.all())
    world.policy.approver_roles.clear()
    first = ApprovalStage.objects.create(
        policy=world.policy, position=0, name=DATA_OWNER, approvals_required=1
    )
    first.approver_roles.set(owners)
    second = ApprovalStage.objects.create(
        policy=world.policy, position=1, name=SECURITY, approvals_required=security_quorum
    )
    second.approver_roles.set([security])
    return Staged(world, frank, grace)
