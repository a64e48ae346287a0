"""Masking policy: ordered rules, exemptions (and grants, which are exemptions with an expiry).

`masking` knows nothing of requests: a just-in-time grant arrives here as an `Exemption` of kind
`grant`, for one principal, with an `expires_at` and the id of the request it came from.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models

from identity.models import Role, ServiceAccount, User
from masking.models.catalog import Project, SemanticType


class MaskingRule(models.Model):
    """A global rule: the first enabled rule whose CEL condition matches a column masks it with
    the rule's semantic type (first match wins, as in Bytebase)."""

    title = models.CharField(max_length=200)
    condition = models.TextField(help_text='CEL over `resource`, e.g. resource.column_name == "email"')
    semantic_type = models.ForeignKey(SemanticType, on_delete=models.PROTECT, related_name="rules")
    position = models.PositiveIntegerField(default=0, db_index=True)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.title


class ExemptionKind(models.TextChoices):
    EXEMPTION = "exemption", "Standing exemption"
    GRANT = "grant", "Just-in-time grant"


class Exemption(models.Model):
    """Unmask for some principals on the columns of one project that match a CEL condition.

    A standing exemption names its members (users, IdP groups, roles, service accounts). A grant
    names one principal in `principal_key` ("user:<id>" or "sa:<name>") and always expires; the
    decision engine compares `expires_at` with the clock itself, so a grant is never honoured past
    its expiry whatever the state of the workers. A grant that extends another starts when that
    one ends (`starts_at`), and the engine does not honour it before then either.
    """

    kind = models.CharField(max_length=10, choices=ExemptionKind.choices, default=ExemptionKind.EXEMPTION)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exemptions")
    condition = models.TextField(blank=True, help_text="CEL over `resource`; empty means every column")
    reason = models.TextField()
    users = models.ManyToManyField(User, blank=True, related_name="exemptions")
    groups = models.ManyToManyField(Group, blank=True, related_name="exemptions")
    roles = models.ManyToManyField(Role, blank=True, related_name="exemptions")
    service_accounts = models.ManyToManyField(ServiceAccount, blank=True, related_name="exemptions")
    principal_key = models.CharField(max_length=100, blank=True, db_index=True)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="A grant is not in force before")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    request_ref = models.CharField(max_length=64, blank=True, help_text="The request a grant came from")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["kind", "principal_key", "expires_at"], name="exemption_grant_lookup")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} in {self.project_id}"


class DecisionEpoch(models.Model):
    """Counters every decision-serving process reads once per request to know its caches are fresh.

    `policy` moves with rules, semantic types, exemptions and classifications; `grants` with grants.
    Each is incremented in the transaction of the change, so the next decision anywhere sees it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    policy = models.BigIntegerField(default=1)
    grants = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"policy v{self.policy}, grants v{self.grants}"
