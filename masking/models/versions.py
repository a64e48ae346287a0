"""Policy versions: every change to the policy is kept as an immutable snapshot with its diff.

The whole policy (semantic types, rules, roles, exemptions, approval policies, project settings)
is exported as one document after each change and stored as a `PolicyVersion`, so any two versions
can be compared and any version restored (restoring is a new change, never a rewrite of history).
Where a project asks for it, a change waits as a `PolicyChange` until a second person approves it.
"""

from __future__ import annotations

import pgtrigger
from django.db import models

from identity.models import User
from masking.models.catalog import Project


class PolicyHead(models.Model):
    """The one row that serialises policy changes: locked FOR UPDATE first in every change, so
    versions are numbered in commit order and a change never diffs against a half-applied one."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"policy at version {self.version}"


class PolicyVersion(models.Model):
    """One committed state of the policy. Never updated: a rollback is a new version."""

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    author_type = models.CharField(max_length=20)
    author_id = models.CharField(max_length=255, blank=True)
    author_name = models.CharField(max_length=255, blank=True)
    approved_by_name = models.CharField(max_length=255, blank=True, help_text="Second person, if required")
    channel = models.CharField(max_length=10)
    message = models.TextField()
    snapshot = models.JSONField(help_text="The whole policy document after this change")
    changes = models.JSONField(default=list, help_text="The diff against the previous version")
    rollback_of = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        triggers = [
            pgtrigger.Protect(name="policyversion_append_only", operation=pgtrigger.Update | pgtrigger.Delete)
        ]

    def __str__(self) -> str:
        return f"v{self.number}: {self.message[:60]}"


class ChangeState(models.TextChoices):
    PENDING = "pending", "Awaiting a second person"
    APPLIED = "applied", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn by its author"
    SUPERSEDED = "superseded", "Superseded: the policy changed before approval"


class PolicyChange(models.Model):
    """A proposed change held back by the two-person rule. `document` is what the author asked for
    and `changes` the diff they reviewed; it is applied only if it still produces that same diff."""

    state = models.CharField(max_length=10, choices=ChangeState.choices, default=ChangeState.PENDING)
    document = models.JSONField()
    changes = models.JSONField()
    base_version = models.PositiveIntegerField()
    projects = models.JSONField(default=list, help_text="Project keys the change affects")
    is_global = models.BooleanField(default=False, help_text="Touches every project (rules, types, roles)")
    message = models.TextField()
    channel = models.CharField(max_length=10)
    author = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    author_subject = models.CharField(max_length=255, help_text="Judged against the approver's")
    author_name = models.CharField(max_length=255)
    author_type = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    version = models.OneToOneField(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="change"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"policy change #{self.pk} ({self.state})"


class UnclassifiedAction(models.TextChoices):
    """What a project does with the columns nobody classified (and whose name suggests nothing)."""

    MASK = "mask", "Mask them"
    UNMASK = "unmask", "Show them in clear"


class ProjectPolicySettings(models.Model):
    """Per-project policy settings. Part of the policy document, so turning the two-person rule off
    is itself a change that needs the second person.

    `unclassified_default` (blank: Veil's default, masked in production environments) and its
    per-environment overrides decide how unclassified columns are answered; the decision engine
    reads them from its snapshot (`masking.decisions.engine.UnclassifiedDefaults`)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="policy_settings")
    two_person_rule = models.BooleanField(
        default=False, help_text="Policy changes affecting this project need a second person's approval"
    )
    unclassified_default = models.CharField(
        max_length=6,
        blank=True,
        choices=UnclassifiedAction.choices,
        help_text="Unclassified columns in every environment; blank: masked in production environments",
    )
    unclassified_environments = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per-environment overrides of the above, e.g. {"staging": "unmask"}',
    )

    class Meta:
        verbose_name_plural = "project policy settings"

    def __str__(self) -> str:
        return f"policy settings of {self.project}"
