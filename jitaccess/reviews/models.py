"""Access review settings, campaigns, their items and the Slack messages that carry them.

Imported by `jitaccess.models`, so they are `jitaccess` models (one app, one migration history).
"""

from __future__ import annotations

from django.db import models

from identity.models import Role, User
from masking.models import Exemption, Project


class OnDeadline(models.TextChoices):
    REMOVE = "remove", "Remove the access"
    ESCALATE = "escalate", "Escalate to the project's policy administrators"


class AccessReviewSettings(models.Model):
    """When a project's unmask access is recertified, how long reviewers have, and what happens to
    what nobody answered. `next_campaign_at` is when the beat sweep opens the next campaign; opening
    one moves it on by `every_days`."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="access_review_settings")
    enabled = models.BooleanField(default=False)
    every_days = models.PositiveSmallIntegerField(
        default=91, help_text="Days between campaigns (91: quarterly)"
    )
    answer_days = models.PositiveSmallIntegerField(default=14, help_text="Days reviewers have to answer")
    on_deadline = models.CharField(max_length=10, choices=OnDeadline.choices, default=OnDeadline.ESCALATE)
    unused_days = models.PositiveSmallIntegerField(
        default=90,
        help_text="Access with no unmask recorded for this many days is proposed for removal (0: never)",
    )
    next_campaign_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "access review settings"

    def __str__(self) -> str:
        return f"access review settings of {self.project}"


class CampaignState(models.TextChoices):
    OPEN = "open", "Open"
    ESCALATED = "escalated", "Escalated"
    CLOSED = "closed", "Closed"


class AccessReviewCampaign(models.Model):
    """One recertification of a project's unmask access. Open until its deadline (or until every
    item is answered); then escalated while escalated items wait for an administrator; then closed.
    The settings it ran under are copied in, so a later change does not rewrite what it was."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="access_review_campaigns")
    state = models.CharField(max_length=10, choices=CampaignState.choices, default=CampaignState.OPEN)
    opened_at = models.DateTimeField()
    opened_by = models.CharField(max_length=255, help_text="Who opened it: a person, or Veil on schedule")
    deadline = models.DateTimeField()
    on_deadline = models.CharField(max_length=10, choices=OnDeadline.choices)
    unused_days = models.PositiveSmallIntegerField()
    deadline_passed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(state="open"),
                name="one_open_access_review_per_project",
            )
        ]
        indexes = [models.Index(fields=["state", "deadline"])]

    def __str__(self) -> str:
        return f"{self.ref} of {self.project}"

    @property
    def ref(self) -> str:
        return f"AR-{self.pk}"


class ItemKind(models.TextChoices):
    EXEMPTION_MEMBER = "exemption_member", "Named by a standing exemption"
    ROLE_MEMBER = "role_member", "Member of a role that unmasks"


class ItemState(models.TextChoices):
    PENDING = "pending", "Waiting for its reviewer"
    ESCALATED = "escalated", "Escalated to the policy administrators"
    KEPT = "kept", "Kept"
    REMOVED = "removed", "Removed"


class AccessReviewItem(models.Model):
    """One way one principal holds unmask access in the project, to keep or remove.

    `member_key` names the principal as `user:<pk>`, `group:<pk>`, `role:<pk>` or
    `service_account:<pk>`; the labels are snapshots taken when the campaign opened, so the item
    still reads right after the exemption, role or person is gone."""

    campaign = models.ForeignKey(AccessReviewCampaign, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=20, choices=ItemKind.choices)
    exemption = models.ForeignKey(
        Exemption, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    member_key = models.CharField(max_length=100)
    member_label = models.CharField(max_length=255)
    access_label = models.CharField(max_length=500)
    reviewer = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_unmask_at = models.DateTimeField(null=True, blank=True)
    usage_tracked = models.BooleanField(
        default=True, help_text="False for break-glass only: not an exemption"
    )
    proposed_removal = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=ItemState.choices, default=ItemState.PENDING)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_by_name = models.CharField(max_length=255, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_channel = models.CharField(max_length=10, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["campaign", "-proposed_removal", "access_label", "member_label", "id"]
        indexes = [models.Index(fields=["reviewer", "state"])]

    def __str__(self) -> str:
        return f"{self.member_label} via {self.access_label}"

    @property
    def is_open(self) -> bool:
        return self.state in (ItemState.PENDING, ItemState.ESCALATED)


class AccessReviewMessage(models.Model):
    """A reviewer's Slack DM for a campaign (`reviewer` set), or the campaign's escalation post in
    a channel (`reviewer` empty). As for request messages, the row is the idempotency key of the
    post: claimed before chat.postMessage, holding the `ts` after. `shown` is what the message last
    showed (answered count and state), so the sweep knows which messages to update."""

    campaign = models.ForeignKey(
        AccessReviewCampaign, on_delete=models.CASCADE, related_name="slack_messages"
    )
    reviewer = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=100, blank=True, help_text="Conversation ID once posted")
    ts = models.CharField(max_length=32, blank=True)
    shown = models.CharField(max_length=64, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is posting it until")
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "reviewer"],
                condition=models.Q(reviewer__isnull=False),
                name="one_access_review_dm_per_reviewer",
            ),
            models.UniqueConstraint(
                fields=["campaign"],
                condition=models.Q(reviewer__isnull=True),
                name="one_access_review_escalation_post",
            ),
        ]

    def __str__(self) -> str:
        return f"Slack message of {self.campaign.ref} for {self.reviewer or 'the escalation channel'}"
