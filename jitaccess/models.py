"""Just-in-time unmask requests, the policies that route their approval, and their notifications."""

from __future__ import annotations

from datetime import timedelta

from django.db import models

from identity.models import Role, ServiceAccount, User
from jitaccess.oncall import OnCallProvider
from jitaccess.states import State
from jitaccess.tickets import HINT_MAX_CHARS, PATTERN_MAX_CHARS, TICKET_MAX_CHARS, validate_ticket_pattern
from masking.models import Database, Exemption, PolicyChange, Project


class ProjectAccessSettings(models.Model):
    """Per-project limits for requests and break-glass."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="access_settings")
    max_duration = models.DurationField(default=timedelta(days=7), help_text="Cap on any request's duration")
    pending_timeout = models.DurationField(
        default=timedelta(hours=24), help_text="Undecided requests time out"
    )
    breakglass_roles = models.ManyToManyField(Role, blank=True, related_name="+")
    breakglass_max_duration = models.DurationField(default=timedelta(hours=1))
    security_emails = models.TextField(
        blank=True, help_text="Comma-separated addresses alerted on break-glass"
    )

    # What a request's ticket must be (jitaccess.selectors.tickets); break-glass asks for none.
    ticket_required = models.BooleanField(default=False, help_text="Every request names a ticket")
    ticket_pattern = models.CharField(
        max_length=PATTERN_MAX_CHARS,
        blank=True,
        validators=[validate_ticket_pattern],
        help_text="A regular expression the whole ticket must match (RE2 syntax), e.g. OPS-[0-9]+",
    )
    ticket_hint = models.CharField(
        max_length=HINT_MAX_CHARS,
        blank=True,
        help_text="What a ticket looks like, in words: shown with the field",
    )
    ticket_in_jira = models.BooleanField(
        default=False, help_text="The ticket must be an open issue in Jira (checked when the request is made)"
    )

    class Meta:
        verbose_name_plural = "project access settings"

    def __str__(self) -> str:
        return f"access settings of {self.project}"


class ApprovalPolicy(models.Model):
    """Who must approve a request, chosen by a CEL condition over the request; first match wins.

    Condition variables: `request.environment_id`, `request.project_id`, `request.instance_id`,
    `request.database_name`, `request.table_name`, `request.classification_level` (the highest
    level in scope, an int, -1 when unclassified), `request.duration_hours` (a double),
    `request.requester_roles` and `request.requester_groups` (lists of strings).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="approval_policies")
    title = models.CharField(max_length=200)
    condition = models.TextField(default="true")
    position = models.PositiveIntegerField(default=0)
    approver_roles = models.ManyToManyField(Role, blank=True, related_name="approval_policies")
    approvals_required = models.PositiveSmallIntegerField(default=1)
    auto_approve = models.BooleanField(default=False, help_text="Grant at once, no approver needed")
    max_duration = models.DurationField(null=True, blank=True, help_text="Tighter cap than the project's")
    slack_channel = models.CharField(
        max_length=100, blank=True, help_text="Channel id or #name for approvals"
    )
    enabled = models.BooleanField(default=True)
    # An on-call schedule (jitaccess.oncall): whoever is on call for it now also approves, and the
    # responder on call may be approved at once for up to `oncall_responder_max_duration`.
    oncall_provider = models.CharField(max_length=20, choices=OnCallProvider.choices, blank=True)
    oncall_schedule_id = models.CharField(max_length=100, blank=True, help_text="The provider's schedule ID")
    oncall_responder_auto_approve = models.BooleanField(
        default=False, help_text="Approve the person on call's own requests at once"
    )
    oncall_responder_max_duration = models.DurationField(
        null=True, blank=True, help_text="Longest such request approved at once"
    )

    class Meta:
        ordering = ["project", "position", "id"]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"{self.project.key}: {self.title}"


class ApprovalStage(models.Model):
    """One step of a policy's approval, asked in `position` order: a stage's approvers are asked
    only once the stage before has its quorum, and one denial at any stage ends the request. A
    policy with stages names its approvers here, not in its own `approver_roles`; a policy without
    any has one implicit stage, its own `approver_roles` and `approvals_required`."""

    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100, help_text="Says who decides at this stage, e.g. Data owner")
    approver_roles = models.ManyToManyField(Role, blank=True, related_name="+")
    approvals_required = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["policy", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="one_stage_per_position"),
            models.UniqueConstraint(fields=["policy", "name"], name="stage_names_unique_in_policy"),
        ]

    def __str__(self) -> str:
        return f"{self.policy}: stage {self.position + 1} ({self.name})"


class AccessRequest(models.Model):
    """A request to unmask a scope (a database, a table, or columns of a table) for a while."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="access_requests")
    requester = models.ForeignKey(User, on_delete=models.PROTECT, related_name="access_requests")
    service_account = models.ForeignKey(
        ServiceAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="access_requests",
        help_text="Set when the grant is for an agent the requester owns",
    )
    database = models.ForeignKey(Database, on_delete=models.PROTECT, related_name="access_requests")
    # NULL means "every schema / every table"; "" is a real name (engines without schemas).
    schema_name = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    table_name = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    column_names = models.JSONField(default=list, blank=True)
    classification_level = models.SmallIntegerField(default=-1, help_text="Highest level in scope")
    duration = models.DurationField()
    reason = models.TextField()
    ticket = models.CharField(
        max_length=TICKET_MAX_CHARS,
        blank=True,
        help_text="As the requester gave it: a link, a key or a reference",
    )
    ticket_url = models.URLField(blank=True, help_text="The ticket's page, when Veil knows it")
    ticket_title = models.CharField(
        max_length=255, blank=True, help_text="The Jira issue's title when the request was made"
    )
    ticket_status = models.CharField(
        max_length=100, blank=True, help_text="The Jira issue's status when the request was made"
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING, db_index=True)
    policy = models.ForeignKey(
        ApprovalPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy_title = models.CharField(max_length=200, blank=True)
    approvals_required = models.PositiveSmallIntegerField(
        default=1, help_text="Of the stage waiting (the only one when the policy has no stages)"
    )
    approver_roles = models.JSONField(
        default=list, blank=True, help_text="Of the stage waiting; a snapshot of the policy's when it opened"
    )
    stages = models.JSONField(
        default=list,
        blank=True,
        help_text="The policy's stages when the request was made (name, approver_roles, "
        "approvals_required), in order; empty for a policy without stages",
    )
    stage = models.PositiveSmallIntegerField(default=1, help_text="Which stage waits or decided, from 1")
    oncall_provider = models.CharField(max_length=20, blank=True, help_text="Snapshot of the policy's")
    oncall_schedule_id = models.CharField(max_length=100, blank=True, help_text="Snapshot of the policy's")
    oncall_note = models.TextField(
        blank=True, help_text="Which on-call schedule and shift approved it at once, when one did"
    )
    pending_until = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    starts_at = models.DateTimeField(
        null=True, blank=True, help_text="When the grant starts: at approval, or when the one it extends ends"
    )
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When access ended: for an expiry, the grant's expires_at"
    )
    expiry_processed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the sweep recorded the expiry (later than ended_at if it was late)",
    )
    ended_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    deny_reason = models.TextField(blank=True)
    grant = models.OneToOneField(
        Exemption, null=True, blank=True, on_delete=models.SET_NULL, related_name="request"
    )
    extends = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="extensions"
    )
    is_breakglass = models.BooleanField(default=False)
    reviewed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "expires_at"]),
            models.Index(fields=["state", "pending_until"]),
        ]

    def __str__(self) -> str:
        return f"{self.ref} {self.scope_label}"

    @property
    def ref(self) -> str:
        return f"REQ-{self.pk}"

    @property
    def scope_label(self) -> str:
        if self.column_names:
            return f"{self.location_label} ({', '.join(self.column_names)})"
        return self.location_label

    @property
    def stage_count(self) -> int:
        """How many stages the request goes through: a policy without stages has one."""
        return len(self.stages) or 1

    @property
    def stage_name(self) -> str:
        """The name of the stage waiting (or that decided); "" without stages."""
        return str(self.stages[self.stage - 1]["name"]) if self.stages else ""

    @property
    def stage_label(self) -> str:
        """ "stage 2 of 3 (Security)", or "" for a request without stages."""
        return f"stage {self.stage} of {self.stage_count} ({self.stage_name})" if self.stages else ""

    @property
    def stage_approvals(self) -> list[Approval]:
        """The approvals given at the stage waiting (all of them without stages). Reads through a
        prefetched `approvals` when there is one, so a queue of requests costs no query each."""
        return [a for a in self.approvals.all() if a.stage == self.stage]

    @property
    def location_label(self) -> str:
        """The scope without its columns: the database, then the table when there is one."""
        label = str(self.database)
        if self.table_name:
            label += f"/{self.schema_name + '.' if self.schema_name else ''}{self.table_name}"
        return label


class Approval(models.Model):
    """One person's approval; counted once per IdP subject whatever the account or channel, and
    once per request whatever its stages: who approved one stage never counts for a later one."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    approver_subject = models.CharField(max_length=255)
    channel = models.CharField(max_length=10)
    stage = models.PositiveSmallIntegerField(default=1, help_text="The stage it was given at, from 1")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver_subject"], name="one_approval_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.approver} approved {self.request.ref}"


class NotificationKind(models.TextChoices):
    APPROVAL_NEEDED = "approval_needed", "Approval needed"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRING = "expiring", "Expires soon"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    TIMED_OUT = "timed_out", "Timed out"
    BREAKGLASS = "breakglass", "Break-glass alert"
    # Slack only: refresh every stored message of the request; re-announce; escalate.
    STATE_CHANGED = "state_changed", "State changed"
    REMINDER = "reminder", "Reminder"
    ESCALATION = "escalation", "Escalation"


class NotificationChannel(models.TextChoices):
    WEB = "web", "Web inbox"
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Not sent (nothing to send it to, or no longer true)"
    FAILED = "failed", "Failed (gave up; an operator can retry)"


class Notification(models.Model):
    """The outbox: written in the transaction of the state change it announces, delivered by Celery
    with retries. `dedupe_key` is unique, so announcing the same thing twice stores it once, and a
    delivery is claimed by a conditional update, so a redelivered task sends nothing twice."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=NotificationKind.choices)
    channel = models.CharField(max_length=10, choices=NotificationChannel.choices)
    recipient = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    destination = models.CharField(max_length=255, blank=True, help_text="Email address or Slack channel")
    dedupe_key = models.CharField(max_length=255, unique=True)
    stage = models.PositiveSmallIntegerField(
        default=1, help_text="The request's approval stage when it was announced (whose approvers it asks)"
    )
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Claimed or backing off until")
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} via {self.channel} for {self.request.ref}"


class SlackRoute(models.Model):
    """Where a project's requests are announced in Slack. The matching approval policy's own
    `slack_channel` wins over `channel`; with no channel anywhere the approvers get DMs."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="slack_route")
    channel = models.CharField(max_length=100, blank=True, help_text="Channel ID (C0123ABCD) or #name")
    dm_approvers = models.BooleanField(default=False, help_text="Also send each approver a DM")
    escalation_channel = models.CharField(
        max_length=100, blank=True, help_text="Where still-pending requests escalate"
    )

    def __str__(self) -> str:
        return f"Slack route of {self.project}"


class SlackMessage(models.Model):
    """One interactive message of a request in one Slack conversation, so that it can be updated in
    place after any restart. The row is the idempotency key of the post: it is claimed (inserted,
    `claimed_until` set) before chat.postMessage and holds the `ts` afterwards, so a redelivered
    task finds it and posts nothing twice."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="slack_messages")
    destination = models.CharField(max_length=100, help_text="What was posted to: channel or Slack user ID")
    channel = models.CharField(max_length=32, blank=True, help_text="Conversation ID that chat.update needs")
    ts = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is posting it until")
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "destination"], name="one_slack_message_per_destination"
            )
        ]

    def __str__(self) -> str:
        return f"{self.request.ref} in {self.destination}"


class SlackLinkMethod(models.TextChoices):
    EMAIL = "email", "Slack email matches the IdP-verified email"
    ADMIN = "admin", "Linked by an administrator"


class SlackUserLink(models.Model):
    """Which Veil user a Slack account acts as. A Slack click is only ever attributed through a
    link; an email link stays valid only while the user's verified email is the one it matched."""

    slack_user_id = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="slack_links")
    verified_via = models.CharField(max_length=10, choices=SlackLinkMethod.choices)
    email = models.EmailField(blank=True, help_text="The email matched, for email links")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.slack_user_id} -> {self.user}"

    @property
    def is_valid(self) -> bool:
        if not self.user.is_active:
            return False
        if self.verified_via == SlackLinkMethod.EMAIL:
            return self.user.email_verified and self.user.email.lower() == self.email.lower()
        return True


class SlackPolicyMessage(models.Model):
    """The Slack message announcing a policy change held by the two-person rule. Like
    `SlackMessage`, the row is the idempotency key of the post: claimed before chat.postMessage,
    holding the `ts` after. `shown_state` is the change's state the message last showed, so the
    periodic sync knows which messages still need updating."""

    change = models.OneToOneField(PolicyChange, on_delete=models.CASCADE, related_name="slack_message")
    channel = models.CharField(max_length=100, help_text="Where it goes; the conversation ID once posted")
    ts = models.CharField(max_length=32, blank=True)
    shown_state = models.CharField(max_length=10, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is posting it until")
    posted_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(
        null=True, blank=True, help_text="When approvers were reminded of the pending change (once)"
    )

    def __str__(self) -> str:
        return f"Slack message of policy change #{self.change_id}"


# Access reviews live in their own package; imported here so that they are models of this app.
from jitaccess.reviews.models import (  # noqa: E402, F401
    AccessReviewCampaign,
    AccessReviewItem,
    AccessReviewMessage,
    AccessReviewSettings,
)
from jitaccess.slack.models import SlackClick  # noqa: E402, F401  (likewise, Slack's recorded clicks)
