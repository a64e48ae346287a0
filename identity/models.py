"""People, IdP groups, roles and service accounts: who can be a principal in Veil.

IdP groups are Django `Group`s, replaced from the IdP's groups claim at every sign-in, so that
django-guardian's per-project group permissions follow the IdP. A `Role` is Veil's own named set of
members (users, IdP groups, service accounts) that exemptions and approval policies refer to.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser, Group
from django.db import models


class User(AbstractUser):
    """A person. OIDC users are keyed on the IdP's `sub` claim, never on email (emails get reused)."""

    oidc_subject = models.CharField(max_length=255, unique=True, null=True, blank=True)
    email_verified = models.BooleanField(default=False)
    display_name = models.CharField(max_length=255, blank=True)
    # Directory sync (SCIM): the id the IdP addresses this person by, and the IdP's own id for them.
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    scim_external_id = models.CharField(max_length=255, blank=True, db_index=True)

    def __str__(self) -> str:
        return self.display_name or self.get_full_name() or self.username

    @property
    def canonical_subject(self) -> str:
        """The identity that self-approval and quorum are judged on: the IdP subject if any."""
        return f"oidc:{self.oidc_subject}" if self.oidc_subject else f"local:{self.pk}"


class DirectoryGroup(models.Model):
    """A group the IdP manages through directory sync (SCIM), beside Django's `Group` (which takes
    no fields of its own): its SCIM id and the IdP's id. The group's name and members stay on the
    `Group`, where django-guardian's project permissions and roles read them."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="directory")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    scim_external_id = models.CharField(max_length=255, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group__name"]

    def __str__(self) -> str:
        return self.group.name


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
    SCIM = "scim", "Provision people and groups from the IdP (SCIM directory sync)"


class PersonalScope(models.TextChoices):
    """What a person's own token may do. Kept apart from `Scope`: a person's token never calls
    Veil's API, and a service account's token never logs anyone in to a database."""

    QUERY = "query", "Log in to databases through veil-proxy"


class ApiToken(models.Model):
    """An API token of a service account, or a personal access token of a person (`user`).

    Exactly one of `service_account` and `user` is set (a database constraint). Only a SHA-256 of
    the secret is stored; it is shown once. The plaintext is `veil_<prefix>_<secret>`: the prefix
    finds the row, the secret is compared against the stored hash in constant time. Secrets are
    256-bit random values, so a fast hash is enough (no password stretching needed) and keeps the
    decision path quick. A service account's token authenticates API calls; a person's token is
    the password veil-proxy checks with Veil (`identity.query_logins`) and is refused by the API.
    """

    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="personal_tokens"
    )
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
    last_used_from = models.GenericIPAddressField(
        null=True, blank=True, help_text="The client address veil-proxy reported (personal tokens)."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(service_account__isnull=False, user__isnull=True)
                | models.Q(service_account__isnull=True, user__isnull=False),
                name="apitoken_one_holder",
                violation_error_message="A token belongs to a service account or to a person, not both.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.holder_name}/{self.name} ({self.prefix})"

    @property
    def holder_name(self) -> str:
        """Whose token it is, as the token listings and the audit log name it."""
        if self.service_account_id is not None:
            return self.service_account.name  # type: ignore[union-attr]
        return f"user:{self.user.username}"  # type: ignore[union-attr]


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
