"""A shop whose standing unmask access is ready for review: the JIT personas (tests.jitaccess.conftest)
plus an exemption naming alice and a role, and that role's members.

Reviewers of the shop are bob and carol (the approval policy's role) and dave (policy admin). The
holdings, as a campaign lists them: alice on the exemption, the role on the exemption, and the
role's members carol and eve. Alice used the exemption yesterday; nobody else ever did, and the
exemption is 200 days old, so the rest is proposed for removal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import Role
from jitaccess.reviews.models import AccessReviewCampaign, AccessReviewItem, OnDeadline
from jitaccess.reviews.services import campaign_open, review_settings_save
from masking.decisions.engine import ColumnKey
from masking.decisions.service import decide_columns
from masking.models import Exemption
from masking.services.policy import exemption_create
from tests.jitaccess.conftest import World

EMAIL = ColumnKey("prod-pg", "shop", "public", "customers", "email")


@dataclass
class Reviewed:
    world: World
    exemption: Exemption
    readers: Role

    def open(self, on_deadline: str = OnDeadline.ESCALATE) -> AccessReviewCampaign:
        review_settings_save(
            project=self.world.project,
            enabled=False,
            every_days=91,
            answer_days=14,
            on_deadline=on_deadline,
            unused_days=90,
            next_campaign_at=None,
            changed_by=self.world.dave,
            channel=Channel.WEB,
        )
        return campaign_open(project=self.world.project, actor=SYSTEM, channel=Channel.SYSTEM)

    def item(self, campaign: AccessReviewCampaign, member: str, access: str = "") -> AccessReviewItem:
        """The campaign's item whose member label starts with `member` and access label with `access`."""
        [found] = [
            i
            for i in campaign.items.all()
            if i.member_label.startswith(member) and i.access_label.startswith(access)
        ]
        return found


def email_action(username: str) -> str:
    """What the data path is told for `username` reading customers.email (the decision is recorded)."""
    result = decide_columns(
        service_account="sql-proxy",
        principal_spec={"user": username},
        asserted_groups=[],
        query_id="",
        columns=[EMAIL],
    )
    return result.decisions[0].action


def make_reviewed(world: World) -> Reviewed:
    """Build the exemption, the role and alice's recorded use on top of the JIT personas."""
    readers = Role.objects.create(name="phone-readers")
    readers.users.add(world.carol, world.eve)
    exemption = exemption_create(
        project=world.project,
        reason="Support reads customer contacts",
        users=[world.alice],
        roles=[readers],
        created_by=world.dave,
        actor=SYSTEM,
        channel=Channel.CLI,
    )
    Exemption.objects.filter(pk=exemption.pk).update(created_at=timezone.now() - timedelta(days=200))
    exemption.refresh_from_db()
    assert email_action("alice") == "unmask", "alice's use of the exemption is recorded"
    return Reviewed(world, exemption, readers)
