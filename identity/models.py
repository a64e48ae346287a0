"""People, IdP groups, roles and service accounts: who can be a principal in Veil.

IdP groups are Django `Group`s, replaced from the IdP's groups claim at every sign-in, so that
django-guardian's per-project group permissions follow the IdP. A `Role` is Veil's own named set of
members (users, IdP groups, service accounts) that exemptions and approval policies refer to.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, Group
from django.db import models


class User(AbstractUser):
    """A person. OIDC users are keyed on the IdP's `sub` claim, never on email (emails get reused)."""

    oidc_subject = models.CharField(max_length=255, unique=True, null=True, blank=True)
    email_verified = models.BooleanField(default=False)
    display_name = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.display_name or self.get_full_name() or self.username

    @property
    def canonical_subject(self) -> str:
        """The identity that self-approval and quorum are judged on: the IdP subject if any."""
        return f"oidc:{self.oidc_subject}" if self.oidc_subject else f"local:{self.pk}"


class ServiceAccount(models.Model):
    """A non-human principal: a data-access layer, an ETL job, an AI agent.

    `owner` is the person accountable for it; requests an agent makes are attributed to them too.
    """

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=500, blank=True)
    owner = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_service_accounts",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF treats whatever authentication returns as `request.user`.
    is_authenticated = True
    is_anonymous = False


class Scope(models.TextChoices):
    """What a service-account token may do. A token carries the least it needs."""

    DECISIONS = "decisions", "Ask for mask/unmask decisions"
    ACCESS_EVENTS = "access-events", "Report access events"
    CATALOG_WRITE = "catalog:write", "Push catalog schema"
    REQUESTS = "requests", "Create unmask requests on behalf of the owner"
    POLICY_WRITE = "policy:write", "Apply masking policy"
    AUDIT_READ = "audit:read", "Read and export the audit log"
    ASSERT_GROUPS = "assert-groups", "Assert groups it verified for the users it asks about"


class ApiToken(models.Model):
    """A service-account API token. Only a SHA-256 of the secret is stored; it is shown once.

    The plaintext is `veil_<prefix>_<secret>`: the prefix finds the row, the secret is compared
    against the stored hash in constant time. Secrets are 256-bit random values, so a fast hash is
    enough (no password stretching needed) and keeps the decision path quick.
    """

    service_account = models.ForeignKey(ServiceAccount, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.service_account.name}/{self.name} ({self.prefix})"


class Role(models.Model):
    """A named set of members that exemptions and approval policies grant to or require."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=500, blank=True)
    users = models.ManyToManyField(User, blank=True, related_name="veil_roles")
    groups = models.ManyToManyField(Group, blank=True, related_name="veil_roles")
    service_accounts = models.ManyToManyField(ServiceAccount, blank=True, related_name="roles")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
