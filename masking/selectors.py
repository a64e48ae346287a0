"""Reads for the decision path: the policy snapshot, the principal, the principal's grants.

Each process keeps the snapshot and the grants it loaded, keyed by the `DecisionEpoch` counters.
It re-reads the counters at most every `DECISION_EPOCH_MAX_AGE_MS` (one primary-key SELECT), so a
change committed in any process reaches every decision within that bound; a change made in this
process is seen by its very next decision. Expiry never waits for either: the engine compares
`expires_at` with the clock. Principals are cached for `PRINCIPAL_CACHE_S` (group and role
membership is not policy), and dropped when the grants epoch moves: directory sync moves it when a
person is deactivated or a group's members change, so those count within the epoch bound too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import Lower
from django.utils import timezone

from audit.models import AuditEvent
from identity.models import ServiceAccount, User
from identity.selectors import role_names_of_service_account, role_names_of_user
from masking.decisions.engine import (
    CatalogColumn,
    ColumnKey,
    Decision,
    ExemptionView,
    Policy,
    Principal,
    ProjectUnclassified,
    RuleView,
    SemanticTypeView,
    UnclassifiedDefaults,
)
from masking.models import (
    Column,
    Database,
    DecisionEpoch,
    Exemption,
    ExemptionKind,
    MaskingRule,
    ProjectPolicySettings,
    SemanticType,
    UnclassifiedAction,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Epochs:
    policy: int
    grants: int


def read_epochs() -> Epochs:
    """One primary-key read; creates the row on first use."""
    row = DecisionEpoch.objects.filter(id=1).values_list("policy", "grants").first()
    if row is None:
        epoch, _ = DecisionEpoch.objects.get_or_create(id=1)
        return Epochs(epoch.policy, epoch.grants)
    return Epochs(*row)


def _standing_exemptions() -> list[ExemptionView]:
    """Live standing exemptions with their members (users by primary key, groups, roles, accounts)."""
    queryset = (
        Exemption.objects.filter(kind=ExemptionKind.EXEMPTION, revoked_at__isnull=True)
        .select_related("project")
        .prefetch_related("users", "groups", "roles", "service_accounts")
    )
    return [
        ExemptionView(
            id=e.pk,
            kind=e.kind,
            project=e.project.key,
            condition=e.condition,
            expires_at=e.expires_at.timestamp() if e.expires_at is not None else None,
            users=frozenset(str(u.pk) for u in e.users.all()),
            groups=frozenset(g.name for g in e.groups.all()),
            roles=frozenset(r.name for r in e.roles.all()),
            service_accounts=frozenset(sa.name for sa in e.service_accounts.all()),
        )
        for e in queryset
    ]


def unclassified_defaults() -> UnclassifiedDefaults:
    """Veil's default for unclassified columns (`UNCLASSIFIED_MASKED_ENVIRONMENTS`) and the projects
    that set their own: one query over the projects with a setting."""
    rows = ProjectPolicySettings.objects.exclude(unclassified_default="", unclassified_environments={})
    mask = UnclassifiedAction.MASK
    projects = {
        key: ProjectUnclassified(
            default=None if default == "" else default == mask,
            environments={env: action == mask for env, action in (environments or {}).items()},
        )
        for key, default, environments in rows.values_list(
            "project__key", "unclassified_default", "unclassified_environments"
        )
    }
    return UnclassifiedDefaults(frozenset(settings.UNCLASSIFIED_MASKED_ENVIRONMENTS), projects)


def load_policy(version: int) -> Policy:
    """Build a snapshot from the database: catalog, semantic types, enabled rules, live exemptions,
    the defaults for unclassified columns."""
    columns: dict[ColumnKey, CatalogColumn] = {}
    # Discovered columns stay unknown (masked by default) until a catalog push confirms them.
    rows = Column.objects.filter(discovered_by_decision=False).values_list(
        "table__schema__database__instance__key",
        "table__schema__database__name",
        "table__schema__name",
        "table__name",
        "name",
        "table__schema__database__project__key",
        "table__schema__database__instance__environment",
        "classification_level",
        "tags",
        "semantic_type__key",
        "suggested_level",
    )
    for (
        instance,
        database,
        schema,
        table,
        name,
        project,
        environment,
        level,
        tags,
        st,
        suggested,
    ) in rows.iterator(chunk_size=5000):
        key = ColumnKey(instance, database, schema, table, name)
        columns[key] = CatalogColumn(key, project, environment, level, tuple(tags or ()), st, suggested)
    semantic_types = {
        st.key: SemanticTypeView(st.key, st.title, st.algorithm) for st in SemanticType.objects.all()
    }
    rules = [
        RuleView(r.pk, r.title, r.condition, r.semantic_type.key)
        for r in MaskingRule.objects.filter(enabled=True).select_related("semantic_type")
    ]
    exemptions = _standing_exemptions()
    return Policy(
        version=version,
        columns=columns,
        semantic_types=semantic_types,
        rules=rules,
        exemptions=exemptions,
        mask_classified_from=settings.MASK_CLASSIFIED_FROM_LEVEL,
        unknown_columns_masked=settings.UNKNOWN_COLUMNS_MASKED,
        unclassified=unclassified_defaults(),
    )


def load_grants(principal: Principal) -> list[ExemptionView]:
    """The principal's grants that are not revoked and not yet expired: one indexed query.

    A grant names its one principal in `principal_key` and has no member lists to fetch."""
    from django.utils import timezone

    key = f"{'user' if principal.kind == 'user' else 'sa'}:{principal.id}"
    rows = Exemption.objects.filter(
        kind=ExemptionKind.GRANT, principal_key=key, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).values_list("pk", "project__key", "condition", "starts_at", "expires_at", "request_ref")
    holder = {"users" if principal.kind == "user" else "service_accounts": frozenset({principal.id})}
    return [
        ExemptionView(
            id=pk,
            kind=ExemptionKind.GRANT,
            project=project,
            condition=condition,
            starts_at=starts_at.timestamp() if starts_at is not None else None,
            expires_at=expires_at.timestamp() if expires_at is not None else None,
            request_ref=request_ref,
            **holder,
        )
        for pk, project, condition, starts_at, expires_at, request_ref in rows
    ]


def resolve_principal(
    spec: Mapping[str, str], asserted_groups: frozenset[str] = frozenset()
) -> Principal | None:
    """Find the principal a data-access layer names; None when Veil does not know it (or it is ambiguous).

    Service accounts are found by name (active only). A person is found by an email only where
    that email is vouched for (`email_vouched_q`): anyone can register an account whose unverified
    email is someone else's, and that must neither take over her decisions nor, by making the
    lookup ambiguous, turn them into `unknown_principal`. A vouched email wins over a username
    (some IdPs let people choose theirs); a username is matched when no vouched email is. Two
    active people with the same vouched email are ambiguous: None, and a warning in the log (the
    policy checks page and `manage.py check --database default` list such collisions).
    Groups a trusted service asserts are added to the user's IdP groups and count for roles too.
    """
    if "service_account" in spec:
        account = ServiceAccount.objects.filter(name=spec["service_account"], is_active=True).first()
        if account is None:
            return None
        return Principal(
            "service_account", account.name, account.name, frozenset(), role_names_of_service_account(account)
        )
    wanted = spec["user"]
    found = list(
        User.objects.filter(
            (Q(email__iexact=wanted) & email_vouched_q()) | Q(username=wanted), is_active=True
        ).order_by("pk")[:3]
    )
    by_email = [u for u in found if u.email.lower() == wanted.lower()]
    by_name = [u for u in found if u.username == wanted and u not in by_email]
    if len(by_email) > 1:
        logger.warning(
            "principal lookup: users %s share a verified email; answering unknown_principal",
            ", ".join(f"#{u.pk}" for u in by_email),
        )
        return None
    if by_email and by_name:
        logger.warning(
            "principal lookup: user #%s's username is user #%s's verified email; the email wins",
            by_name[0].pk,
            by_email[0].pk,
        )
    chosen = by_email or by_name
    if not chosen:
        return None
    user = chosen[0]
    groups = frozenset(user.groups.values_list("name", flat=True)) | asserted_groups
    return Principal("user", str(user.pk), str(user), groups, role_names_of_user(user, asserted_groups))


def email_vouched_q() -> Q:
    """People whose email stands for them: verified by the IdP (`email_verified`), or a local
    account (no IdP subject), which only an administrator creates and whose email only an
    administrator sets. An IdP account whose email the IdP did not verify is not matched by it."""
    return Q(email_verified=True) | Q(oidc_subject__isnull=True)


@dataclass(frozen=True)
class PrincipalCollision:
    """A name that more than one active person answers to, in the ways decisions look people up."""

    name: str
    users: tuple[User, ...]
    summary: str  # for an administrator: who, and how they collide


def principal_collisions() -> list[PrincipalCollision]:
    """Emails shared (in any case) by more than one active person, and usernames that are another
    person's email. Decisions ignore unverified emails and prefer a vouched email to a username, so
    most of these change no answer; each is still someone an administrator should look at (an
    impersonation attempt, or a person with two accounts). Three queries whatever the number of users."""
    people = User.objects.filter(is_active=True).exclude(email="").annotate(key=Lower("email"))
    shared = people.values("key").annotate(n=Count("pk")).filter(n__gt=1).values("key")
    collisions: list[PrincipalCollision] = []
    by_email: dict[str, list[User]] = {}
    for user in people.filter(key__in=shared).order_by("key", "pk"):
        by_email.setdefault(user.key, []).append(user)  # type: ignore[attr-defined]
    for email, users in by_email.items():
        names = ", ".join(_described(u) for u in users)
        collisions.append(PrincipalCollision(email, tuple(users), f"{names} share the email {email!r}"))
    named = User.objects.filter(is_active=True).annotate(key=Lower("username"))
    owners: dict[str, list[User]] = {}
    for owner in people.filter(key__in=named.values("key")).order_by("pk"):
        owners.setdefault(owner.key, []).append(owner)  # type: ignore[attr-defined]
    for user in named.filter(key__in=list(owners)).order_by("pk"):
        others = [o for o in owners[user.key] if o.pk != user.pk]  # type: ignore[attr-defined]
        if others:
            emails = ", ".join(map(_described, others))
            summary = f"the username of {_described(user)} is the email of {emails}"
            collisions.append(PrincipalCollision(user.username, (*others, user), summary))
    return collisions


def _described(user: User) -> str:
    return f"{user.username} ({'verified' if user.email_verified else 'unverified'})"


class DecisionCaches:
    """Per-process caches for the decision path, invalidated by the epochs and a short clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: tuple[float, Epochs] | None = None  # (read at, epochs)
        self._policy: Policy | None = None
        self._grants_epoch = -1
        self._grants: dict[tuple[str, str], list[ExemptionView]] = {}
        self._principals: dict[tuple[object, ...], tuple[float, Principal | None]] = {}
        self._principals_epoch = -1  # the grants epoch the cached principals were read under

    def epochs(self) -> Epochs:
        """The epochs, read from the database when the last read is older than the bound."""
        cached = self._epochs
        now = time.monotonic()
        if cached is not None and now - cached[0] < settings.DECISION_EPOCH_MAX_AGE_MS / 1000:
            return cached[1]
        epochs = read_epochs()
        if epochs.grants != self._principals_epoch:
            self._principals.clear()
            self._principals_epoch = epochs.grants
        self._epochs = (now, epochs)
        return epochs

    def forget_epochs(self) -> None:
        """Make the next decision in this process read the epochs (called when they move)."""
        self._epochs = None

    def policy(self, epochs: Epochs) -> Policy:
        current = self._policy
        if current is not None and current.version == epochs.policy:
            return current
        with self._lock:
            if self._policy is None or self._policy.version != epochs.policy:
                self._policy = load_policy(epochs.policy)
            return self._policy

    def grants(self, epochs: Epochs, principal: Principal) -> list[ExemptionView]:
        if self._grants_epoch != epochs.grants or len(self._grants) > 10000:
            self._grants = {}
            self._grants_epoch = epochs.grants
        key = (principal.kind, principal.id)
        found = self._grants.get(key)
        if found is None:
            found = self._grants[key] = load_grants(principal)
        return found

    def principal(self, spec: Mapping[str, str], asserted_groups: frozenset[str]) -> Principal | None:
        key = (tuple(sorted(spec.items())), asserted_groups)
        now = time.monotonic()
        cached = self._principals.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = resolve_principal(spec, asserted_groups)
        if len(self._principals) > 10000:
            self._principals.clear()
        self._principals[key] = (now + settings.PRINCIPAL_CACHE_S, principal)
        return principal

    def clear(self) -> None:
        with self._lock:
            self._epochs = None
            self._policy = None
            self._grants = {}
            self._principals.clear()


decision_caches = DecisionCaches()


def columns_visible_to(
    principal: Mapping[str, str], database: Database, columns: Sequence[Column]
) -> dict[int, Decision]:
    """Each catalog column's answer for the principal right now (by column id), as the decision
    path gives it, with its reason: what another app shows a person about what they see in clear
    (the request form, the "nothing to request" refusal). `principal` is the decision request's
    (`{"user": name}` or `{"service_account": name}`); `columns` are `database`'s, with their table
    and schema loaded. Empty when Veil does not know the principal: everything is then masked.

    The epochs are read afresh (not the per-process bound), so a change this request just
    committed counts."""
    epochs = read_epochs()
    resolved = decision_caches.principal(principal, frozenset())
    if resolved is None:
        return {}
    keys = [
        ColumnKey(database.instance.key, database.name, c.table.schema.name, c.table.name, c.name)
        for c in columns
    ]
    grants = decision_caches.grants(epochs, resolved)
    decisions = decision_caches.policy(epochs).decide(resolved, keys, grants, now=timezone.now().timestamp())
    return {c.pk: d for c, d in zip(columns, decisions, strict=True)}


def discovery_throttles(projects: set[str], *, since: datetime) -> list[AuditEvent]:
    """When tokens' decision requests named more unknown columns of these projects than their
    discovery budget let into the catalog (`DiscoveryBudget`), newest first: one event per token,
    project and window, so the list stays short however hard a token pushed."""
    return list(
        AuditEvent.objects.filter(
            action="catalog.discoveries_throttled", project__in=sorted(projects), occurred_at__gte=since
        ).order_by("-seq")[:50]
    )


def database_projects(databases: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(instance key, database name) -> project key, for those the catalog knows. One query.
    For audit's reports: an access event names columns (`instance/database/schema.table.column`),
    and audit scopes its readers by project without importing the catalog, so it asks this
    (registered in `MaskingConfig.ready`)."""
    if not databases:
        return {}
    wanted = Q()
    for instance, name in databases:
        wanted |= Q(instance__key=instance, name=name)
    rows = Database.objects.filter(wanted).values_list("instance__key", "name", "project__key")
    return {(instance, name): project for instance, name, project in rows}
