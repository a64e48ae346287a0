"""Decisions clicked in Slack, kept from the acknowledgement until they are applied."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class SlackClickKind(models.TextChoices):
    APPROVE = "approve", "Approve a request"
    DENY = "deny", "Deny a request (the modal's reason)"
    POLICY_APPROVE = "policy_approve", "Approve a policy change"
    POLICY_REJECT = "policy_reject", "Reject a policy change (the modal's note)"
    REVIEW_KEEP = "review_keep", "Keep access under review"
    REVIEW_REMOVE = "review_remove", "Remove access under review"


class SlackClick(models.Model):
    """A decision clicked in Slack (a button, or a reason modal submitted), committed before Slack
    gets its 200 and applied after (`jitaccess.slack.clicks`): a node that dies in between loses
    nothing, the sweep applies it. `key` is the payload's digest, by which the lazy listener finds
    the row its acknowledgement wrote. Holds what the decision needs, not the payload."""

    key = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the payload")
    kind = models.CharField(max_length=20, choices=SlackClickKind.choices)
    slack_user_id = models.CharField(max_length=255)
    target_id = models.BigIntegerField(null=True, blank=True, help_text="Request, policy change or item")
    channel_id = models.CharField(max_length=255, blank=True, help_text="Where the clicker is answered")
    message_ts = models.CharField(max_length=255, blank=True)
    text = models.TextField(blank=True, help_text="The deny reason or the reject note")
    received_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failed attempts to apply it")
    processed_at = models.DateTimeField(null=True, blank=True, help_text="Applied, refused or given up")

    class Meta:
        indexes = [
            models.Index(
                fields=["received_at"], name="slack_click_waiting", condition=Q(processed_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"Slack {self.kind} by {self.slack_user_id} on #{self.target_id}"
