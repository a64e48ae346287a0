"""A small, realistic company for the quick start and for trying Veil by hand.

Idempotent: running it again changes nothing (passwords are set only when a user is created).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group
from django.db import transaction
from guardian.shortcuts import assign_perm

from audit.models import Channel
from audit.services import SYSTEM
from identity.models import ApiToken, Role, ServiceAccount, User
from identity.models import Scope as TokenScope
from identity.services import hash_secret, split_token, token_create
from jitaccess.models import (
    AccessRequest,
    ApprovalPolicy,
    DeliveryState,
    Notification,
    NotificationChannel,
    ProjectAccessSettings,
)
from jitaccess.policy.services import approval_policy_save
from jitaccess.selectors.scopes import Scope
from jitaccess.services.requests import request_approve, request_create, request_deny
from masking.decisions.engine import FULL_ALGORITHM, ColumnKey
from masking.decisions.service import decide_columns
from masking.models import ClassificationLevel as L
from masking.models import Database, Exemption, ExemptionKind, MaskingRule, Project, SemanticType
from masking.services.catalog import catalog_upsert
from masking.services.policy import exemption_create, rule_save

DEMO_PASSWORD = "veil-demo"  # noqa: S105 - demo-only, printed by the quick start
# A decision-API token as public as the password: `make run` prints it with a curl and an SDK
# command, and the home page shows it to those who manage tokens, so the API is one paste away.
# Only demo_data creates it (refused with DEBUG=0 unless --allow-public-passwords); revoking it in
# the Service accounts page ends it for good (demo_data never re-creates a revoked one).
DEMO_TOKEN = "veil_demo_veil-demo-public-decisions-token"  # noqa: S105 - demo-only, published
DEMO_CLIENT_ACCOUNT = "demo-client"

SEMANTIC_TYPES = [
    ("email", "Email address", {"type": "email"}),
    ("phone", "Phone number", {"type": "show_last", "n": 2, "substitution": "*"}),
    ("person-name", "Person name", {"type": "default_partial"}),
    ("birth-date", "Birth date", {"type": "date_year"}),
    ("card-number", "Card number", {"type": "show_last", "n": 4, "substitution": "*"}),
    ("address", "Postal address", dict(FULL_ALGORITHM)),
    ("ip-address", "IP address", {"type": "md5", "salt": "demo-salt"}),
    # Support notes are free text with customers' emails, phone numbers and cards typed into them:
    # the data-access layer replaces those (`<EMAIL>`, `<PHONE>`...) and keeps the rest readable.
    ("free-text", "Free text with personal data in it", {"type": "redact_text"}),
]

# table -> [(column, type, level, semantic type)]
SHOP_TABLES: dict[str, list[tuple[str, str, int | None, str | None]]] = {
    "customers": [
        ("id", "bigint", L.INTERNAL, None),
        ("email", "text", L.RESTRICTED, "email"),
        ("phone", "text", L.RESTRICTED, "phone"),
        ("first_name", "text", L.CONFIDENTIAL, "person-name"),
        ("last_name", "text", L.CONFIDENTIAL, "person-name"),
        ("birth_date", "date", L.RESTRICTED, "birth-date"),
        ("address", "text", L.RESTRICTED, "address"),
        ("created_at", "timestamp with time zone", L.INTERNAL, None),
    ],
    "orders": [
        ("id", "bigint", L.INTERNAL, None),
        ("customer_id", "bigint", L.INTERNAL, None),
        ("total_cents", "integer", L.INTERNAL, None),
        ("shipping_address", "text", L.RESTRICTED, "address"),
        ("ip_address", "inet", L.CONFIDENTIAL, "ip-address"),
        ("created_at", "timestamp with time zone", L.INTERNAL, None),
    ],
    "payments": [
        ("id", "bigint", L.INTERNAL, None),
        ("order_id", "bigint", L.INTERNAL, None),
        ("card_number", "text", L.HIGHLY_RESTRICTED, "card-number"),
        ("amount_cents", "integer", L.INTERNAL, None),
        ("status", "text", L.PUBLIC, None),
    ],
    "support_notes": [
        ("id", "bigint", L.INTERNAL, None),
        ("customer_id", "bigint", L.INTERNAL, None),
        ("body", "text", L.RESTRICTED, "free-text"),
    ],
}


@dataclass(frozen=True)
class Person:
    username: str
    name: str
    groups: tuple[str, ...]
    is_superuser: bool = False


PEOPLE = [
    Person("admin", "Ada Admin", ("security",), is_superuser=True),
    Person("alice", "Alice Engineer", ("engineering",)),
    Person("bob", "Bob Lead", ("engineering", "approvers")),
    Person("carol", "Carol Support", ("support",)),
    Person("dave", "Dave Compliance", ("compliance",)),
    Person("erin", "Erin Security", ("security", "approvers")),
]

DEMO_USERNAMES = frozenset(p.username for p in PEOPLE)

# project -> group -> permissions
PERMISSIONS = {
    "shop": {
        "engineering": ["request_unmask"],
        "support": ["request_unmask"],
        "approvers": ["approve_request"],
        "security": ["administer_policy", "approve_request", "view_audit"],
        "compliance": ["view_audit"],
    },
    "analytics": {
        "engineering": ["request_unmask"],
        "approvers": ["approve_request"],
        "security": ["administer_policy", "view_audit"],
        "compliance": ["view_audit"],
    },
}

ROLES = {
    "engineers": ("Engineers who debug production", ("engineering",)),
    "support-agents": ("Customer support", ("support",)),
    "pii-approvers": ("May approve unmask requests", ("approvers",)),
    "security-oncall": ("Break-glass for incidents", ("security",)),
    "compliance": ("Audit and exports", ("compliance",)),
}


@transaction.atomic
def load_demo_data() -> list[str]:
    """Create (or leave as is) the demo company. Returns the usernames of the demo people."""
    projects = {
        "shop": Project.objects.get_or_create(key="shop", defaults={"title": "Shop"})[0],
        "analytics": Project.objects.get_or_create(key="analytics", defaults={"title": "Analytics"})[0],
    }
    for key, title, algorithm in SEMANTIC_TYPES:
        SemanticType.objects.get_or_create(key=key, defaults={"title": title, "algorithm": algorithm})

    for instance, environment in (("prod-pg", "prod"), ("staging-pg", "staging")):
        catalog_upsert(
            instance_spec={
                "id": instance,
                "title": f"{environment} PostgreSQL",
                "engine": "postgresql",
                "environment": environment,
            },
            databases=[_shop_database(), _analytics_database()],
            prune=False,
            actor=SYSTEM,
            channel=Channel.CLI,
        )

    groups = {name: Group.objects.get_or_create(name=name)[0] for p in PEOPLE for name in p.groups}
    for person in PEOPLE:
        first, last = person.name.split(" ", 1)
        user, created = User.objects.get_or_create(
            username=person.username,
            defaults={
                "email": f"{person.username}@example.com",
                "email_verified": True,
                "first_name": first,
                "last_name": last,
                "display_name": person.name,
                "is_staff": person.is_superuser,
                "is_superuser": person.is_superuser,
            },
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            user.groups.set([groups[g] for g in person.groups])

    for project_key, grants in PERMISSIONS.items():
        for group_name, perms in grants.items():
            group = groups.get(group_name) or Group.objects.get_or_create(name=group_name)[0]
            for perm in perms:
                assign_perm(f"masking.{perm}", group, projects[project_key])

    for name, (description, group_names) in ROLES.items():
        role, _ = Role.objects.get_or_create(name=name, defaults={"description": description})
        role.groups.add(*[groups[g] for g in group_names])

    ServiceAccount.objects.get_or_create(
        name="sql-proxy", defaults={"description": "The SQL proxy in front of prod-pg"}
    )
    _load_demo_token()
    _load_policy(projects["shop"])
    # Security's on-call may break the glass in the shop (erin and admin are in that role).
    oncall, _ = ProjectAccessSettings.objects.get_or_create(
        project=projects["shop"], defaults={"security_emails": "security@example.com"}
    )
    oncall.breakglass_roles.add(Role.objects.get(name="security-oncall"))
    _load_requests(projects["shop"])
    return [p.username for p in PEOPLE]


def _load_requests(shop: Project) -> None:
    """Approval policies and a little history, so the pages and dashboards are not empty."""
    approvers = Role.objects.get(name="pii-approvers")
    if not ApprovalPolicy.objects.filter(project=shop).exists():
        approval_policy_save(
            project=shop,
            title="Staging is self-service",
            condition='request.environment_id == "staging"',
            auto_approve=True,
            actor=SYSTEM,
            channel=Channel.CLI,
        )
        approval_policy_save(
            project=shop,
            title="Production PII",
            condition="true",
            approver_roles=[approvers],
            approvals_required=1,
            max_duration=timedelta(days=1),
            actor=SYSTEM,
            channel=Channel.CLI,
        )
    if AccessRequest.objects.exists():
        return
    alice, bob, carol = (User.objects.get(username=n) for n in ("alice", "bob", "carol"))
    prod_shop = Database.objects.get(instance__key="prod-pg", name="shop")
    customers = Scope(prod_shop, "public", "customers", ("email", "birth_date"))
    granted = request_create(
        requester=alice,
        scope=customers,
        duration=timedelta(hours=2),
        reason="INC-4711 refund mismatch",
        ticket="https://tickets.example.com/INC-4711",
        channel=Channel.WEB,
    )
    request_approve(request_id=granted.pk, approver=bob, channel=Channel.WEB)
    # The SQL proxy has asked about Alice's queries twice since, so "who saw unmasked data" has rows.
    for query_id in ("demo-query-1", "demo-query-2"):
        decide_columns(
            service_account="sql-proxy",
            principal_spec={"user": alice.username},
            asserted_groups=(),
            query_id=query_id,
            columns=[
                ColumnKey("prod-pg", "shop", "public", "customers", c) for c in ("id", "email", "birth_date")
            ],
        )
    denied = request_create(
        requester=carol,
        scope=Scope(prod_shop, "public", "payments", ("card_number",)),
        duration=timedelta(hours=1),
        reason="Customer asks about a charge",
        channel=Channel.WEB,
    )
    request_deny(
        request_id=denied.pk,
        approver=bob,
        reason="Use the last four digits in the support tool",
        channel=Channel.WEB,
    )
    _not_announced(granted, denied)
    request_create(
        requester=alice,
        scope=Scope(prod_shop, "public", "orders", ("shipping_address",)),
        duration=timedelta(hours=4),
        reason="Courier reports wrong addresses (OPS-210)",
        channel=Channel.WEB,
    )


def _not_announced(*history: AccessRequest) -> None:
    """The demo's past requests are history: with Slack (or email) configured, nothing is posted for
    them (an approval message for a request already decided, then its update at once, is noise in a
    real channel). Their outbox rows are marked skipped in the transaction that wrote them, so no
    worker ever claims them; the web inbox keeps its entries. The request still pending is announced."""
    Notification.objects.filter(request__in=history, state=DeliveryState.PENDING).exclude(
        channel=NotificationChannel.WEB
    ).update(state=DeliveryState.SKIPPED, last_error="demo history: not announced")


def _load_demo_token() -> None:
    account, _ = ServiceAccount.objects.get_or_create(
        name=DEMO_CLIENT_ACCOUNT,
        defaults={"description": "The demo's API client; its token is public (printed by make run)"},
    )
    prefix, _ = split_token(DEMO_TOKEN) or ("", "")
    if not ApiToken.objects.filter(prefix=prefix).exists():
        token_create(
            service_account=account,
            name="demo (public)",
            scopes=[TokenScope.DECISIONS, TokenScope.ACCESS_EVENTS],
            created_by=None,
            channel=Channel.CLI,
            plaintext=DEMO_TOKEN,
        )


def try_the_api(site_url: str) -> list[str]:
    """The commands that try the decision API with the demo's token, ready to paste (printed by
    demo_data, shown on administrators' home page): alice's grant unmasks customers.email."""
    column = {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers"}
    body = {
        "principal": {"user": "alice"},
        "columns": [{**column, "column": "email"}, {**column, "column": "phone"}],
    }
    return [
        f"curl -s {site_url}/api/v1/decisions -H 'Authorization: Bearer {DEMO_TOKEN}' "
        f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'",
        f".venv/bin/python sdk/examples/mask_query.py --url {site_url} --token {DEMO_TOKEN}",
    ]


def demo_persona(user: User) -> str:
    """The demo person `user` is ("alice", "bob", ...), for the home page's guide to what to try next
    as them; "" for anyone else, and for everyone once the demo is not live (no demo data, or its
    public token revoked, as the README asks before an installation is shown to anyone), so a real
    deployment never shows the guide. One indexed query, only for the demo's usernames."""
    is_demo_person = user.username in DEMO_USERNAMES and user.email == f"{user.username}@example.com"
    return user.username if is_demo_person and demo_token_live() else ""


def demo_token_live() -> bool:
    """Whether the demo's public token works (demo data loaded, token neither revoked nor its
    account deactivated); read only, unlike `token_authenticate`, which records a use."""
    prefix, secret = split_token(DEMO_TOKEN) or ("", "")
    return ApiToken.objects.filter(
        prefix=prefix,
        key_hash=hash_secret(secret),
        revoked_at__isnull=True,
        service_account__is_active=True,
    ).exists()


RULES = [
    ("Email addresses anywhere", 'resource.column_name.matches("(^|_)email$")', "email"),
    ("Card numbers", 'resource.column_name == "card_number"', "card-number"),
]


def _load_policy(shop: Project) -> None:
    """Two masking rules and a standing exemption for support, created once."""
    for title, condition, semantic_type in RULES:
        if not MaskingRule.objects.filter(title=title).exists():
            rule_save(
                title=title,
                condition=condition,
                semantic_type=SemanticType.objects.get(key=semantic_type),
                actor=SYSTEM,
                channel=Channel.CLI,
            )
    if not Exemption.objects.filter(project=shop, kind=ExemptionKind.EXEMPTION).exists():
        exemption_create(
            project=shop,
            reason="Support confirms callers by phone number",
            condition='resource.table_name == "customers" && resource.column_name == "phone"',
            roles=[Role.objects.get(name="support-agents")],
            created_by=None,
            actor=SYSTEM,
            channel=Channel.CLI,
        )


def _shop_database() -> dict:
    return {
        "name": "shop",
        "project": "shop",
        "schemas": [
            {
                "name": "public",
                "tables": [
                    {
                        "name": table,
                        "columns": [
                            {
                                "name": name,
                                "data_type": dtype,
                                "classification_level": level,
                                "semantic_type": st,
                            }
                            for name, dtype, level, st in columns
                        ],
                    }
                    for table, columns in SHOP_TABLES.items()
                ],
            }
        ],
    }


def _analytics_database() -> dict:
    return {
        "name": "warehouse",
        "project": "analytics",
        "schemas": [
            {
                "name": "marts",
                "tables": [
                    {
                        "name": "customer_ltv",
                        "columns": [
                            {
                                "name": "customer_id",
                                "data_type": "bigint",
                                "classification_level": L.INTERNAL,
                            },
                            {
                                "name": "email",
                                "data_type": "text",
                                "classification_level": L.RESTRICTED,
                                "semantic_type": "email",
                            },
                            {
                                "name": "ltv_cents",
                                "data_type": "bigint",
                                "classification_level": L.INTERNAL,
                            },
                        ],
                    }
                ],
            }
        ],
    }
